//! The dispatcher's sans-IO core: a datagram (bytes, addresses, a clock value) in, an action out.
//!
//! Both I/O shells (AF_XDP and plain UDP) feed this same core, so behaviour never depends on the
//! backend and the core is testable without privileges. Until the routing core lands, every
//! well-known-port datagram is answered with a counted drop: the appliance receives, counts and
//! reports, and sends nothing it has not decided properly.
use std::net::SocketAddr;

use dispatcher_common::PortProto;

/// One datagram received on a well-known port.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    /// Which protocol the port carries.
    pub proto: PortProto,
    /// Who sent it (the address replies go to).
    pub src: SocketAddr,
    /// The well-known address it was sent to.
    pub dst: SocketAddr,
    /// UDP payload.
    pub payload: &'a [u8],
}

/// Why the core dropped a datagram; each reason is its own counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// No routing decision is implemented for this message yet.
    NotRouted,
    /// Empty datagram: nothing to dispatch (keep-alives are often empty or CRLF).
    Empty,
}

/// What the shell must do with the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Drop it; the reason has been counted.
    Drop(DropReason),
}

/// Counters of every decision the core made.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CoreStats {
    /// SIP datagrams seen.
    pub sip: u64,
    /// MGCP datagrams seen.
    pub mgcp: u64,
    /// Payload bytes seen.
    pub bytes: u64,
    /// Dropped: not routed.
    pub dropped_not_routed: u64,
    /// Dropped: empty.
    pub dropped_empty: u64,
}

/// The dispatcher core. One per dispatcher thread; no locks, no allocation per datagram.
#[derive(Debug, Default)]
pub struct Core {
    stats: CoreStats,
}

impl Core {
    /// Creates a core with zeroed counters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decides what to do with one datagram. `now_ns` is a monotonic clock value.
    pub fn handle(&mut self, _now_ns: u64, msg: &Inbound<'_>) -> Action {
        match msg.proto {
            PortProto::Sip => self.stats.sip += 1,
            PortProto::Mgcp => self.stats.mgcp += 1,
        }
        self.stats.bytes += msg.payload.len() as u64;
        if msg.payload.iter().all(|b| b.is_ascii_whitespace()) {
            self.stats.dropped_empty += 1;
            return Action::Drop(DropReason::Empty);
        }
        self.stats.dropped_not_routed += 1;
        Action::Drop(DropReason::NotRouted)
    }

    /// Counters so far.
    pub fn stats(&self) -> CoreStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inbound(proto: PortProto, payload: &[u8]) -> Inbound<'_> {
        Inbound {
            proto,
            src: "198.18.0.2:40000".parse().unwrap(),
            dst: "198.18.0.1:5060".parse().unwrap(),
            payload,
        }
    }

    #[test]
    fn every_datagram_is_counted_once() {
        let mut core = Core::new();
        assert_eq!(
            core.handle(0, &inbound(PortProto::Sip, b"INVITE sip:a SIP/2.0\r\n\r\n")),
            Action::Drop(DropReason::NotRouted)
        );
        assert_eq!(
            core.handle(0, &inbound(PortProto::Mgcp, b"CRCX 1 a@gw MGCP 1.0\n")),
            Action::Drop(DropReason::NotRouted)
        );
        assert_eq!(
            core.handle(0, &inbound(PortProto::Sip, b"\r\n\r\n")),
            Action::Drop(DropReason::Empty)
        );
        let s = core.stats();
        assert_eq!((s.sip, s.mgcp), (2, 1));
        assert_eq!(s.dropped_not_routed + s.dropped_empty, 3);
    }
}
