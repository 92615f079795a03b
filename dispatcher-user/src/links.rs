//! The shell side of handoff: carries out the router's [`Output`] and builds the [`Snapshot`]
//! it decides with.
//!
//! It owns what the sans-IO router must not touch: the producer end of each in-chassis
//! processor's fabric queue (pushes, then one publish and at most one eventfd wake-up per
//! batch at [`Links::flush`]), the LAN forwarding socket and its `sendmmsg` batch, and the load
//! board that processor threads and the LAN health monitor write. [`Links::refresh`] reads that
//! board once per receive batch into the snapshot, so the router sees one consistent value.
use std::{net::SocketAddr, sync::Arc};

use fabric::{LoadReport, Producer, Proto};

use crate::{
    forward::Forwarder,
    route::{local_alive, Inbound, MemberSpec, MemberView, Output, Router, RouterConfig, Snapshot},
};
use dispatcher_common::PortProto;

/// How the dispatcher reaches one processor.
pub enum Link {
    /// A thread in this chassis: its fabric queue (claim 3).
    Local(Producer),
    /// A process on another host, over the LAN (claim 4).
    Remote(SocketAddr),
}

/// One processor as the shell knows it.
pub struct LinkedMember {
    /// What the router is told.
    pub spec: MemberSpec,
    /// How to reach it.
    pub link: Link,
    /// What it reports (in-chassis: written by its thread; remote: by the health monitor).
    pub load: Arc<LoadReport>,
}

impl LinkedMember {
    /// An in-chassis member on `port`.
    pub fn local(port: u16, capacity: u32, producer: Producer, load: Arc<LoadReport>) -> Self {
        Self {
            spec: MemberSpec::local(port, capacity),
            link: Link::Local(producer),
            load,
        }
    }

    /// A member on another host at `addr`.
    pub fn remote(addr: SocketAddr, capacity: u32, load: Arc<LoadReport>) -> Self {
        Self {
            spec: MemberSpec::remote(addr, capacity),
            link: Link::Remote(addr),
            load,
        }
    }
}

/// Counters of carrying out handoffs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LinkStats {
    /// Handoffs a fabric queue refused although the router saw room (never expected: the
    /// router is the only producer; counted to be sure). The sender retransmits.
    pub push_failed: u64,
    /// Datagrams handed to the kernel for processors on other hosts.
    pub lan_sent: u64,
    /// Datagrams the kernel refused (counted; the sender retransmits).
    pub lan_errors: u64,
}

/// Every processor's link, and the snapshot built from their load board.
pub struct Links {
    members: Vec<LinkedMember>,
    forwarder: Option<Forwarder>,
    snapshot: Snapshot,
    origin_ns: u64,
    heartbeat_timeout_ns: u64,
    push_failed: u64,
}

impl Links {
    /// Links to `members`; `forwarder` is needed when any is remote (without it, handoffs to
    /// remote members are counted as failed). `origin_ns` is the dispatcher's start: in-chassis
    /// processors are alive until their first heartbeat is due.
    pub fn new(
        members: Vec<LinkedMember>,
        forwarder: Option<Forwarder>,
        cfg: &RouterConfig,
        origin_ns: u64,
    ) -> Self {
        Self {
            snapshot: Snapshot::new(members.len()),
            members,
            forwarder,
            origin_ns,
            heartbeat_timeout_ns: cfg.heartbeat_timeout_ns,
            push_failed: 0,
        }
    }

    /// What the router is told about each member.
    pub fn specs(&self) -> Vec<MemberSpec> {
        self.members.iter().map(|m| m.spec).collect()
    }

    /// Reads the load board into the snapshot (once per receive batch) and returns it.
    pub fn refresh(&mut self, now_ns: u64) -> &Snapshot {
        use std::sync::atomic::Ordering::Relaxed;
        self.snapshot.epoch = self.snapshot.epoch.wrapping_add(1);
        for (m, v) in self.members.iter().zip(self.snapshot.members.iter_mut()) {
            let l = &m.load;
            *v = match &m.link {
                Link::Local(p) => MemberView {
                    alive: local_alive(
                        now_ns,
                        self.origin_ns,
                        l.heartbeat_ns.load(Relaxed),
                        self.heartbeat_timeout_ns,
                    ),
                    released_units: l.released_units.load(Relaxed),
                    reported_in_use: 0,
                    reports: 0,
                    reported_capacity: l.capacity_units.load(Relaxed),
                    queue_free: p.capacity().saturating_sub(p.depth()),
                    queue_capacity: p.capacity(),
                    pending_invites: l.pending_invites.load(Relaxed),
                },
                Link::Remote(_) => MemberView::remote(
                    l.up.load(Relaxed),
                    l.in_use_units.load(Relaxed),
                    l.reports.load(Relaxed),
                    l.capacity_units.load(Relaxed),
                ),
            };
        }
        &self.snapshot
    }

    /// The snapshot last refreshed.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Pushes `out`'s handoffs for datagram `msg` received at `now_ns` (visible to the
    /// processors after [`Links::flush`]).
    pub fn carry_out(&mut self, now_ns: u64, msg: &Inbound<'_>, out: &Output) {
        let proto = match msg.proto {
            PortProto::Sip => Proto::Sip,
            PortProto::Mgcp => Proto::Mgcp,
        };
        for h in out.handoffs() {
            let bytes = out.bytes(h, msg.payload);
            let Some(m) = self.members.get_mut(usize::from(h.to)) else {
                self.push_failed += 1;
                continue;
            };
            let ok = match &mut m.link {
                Link::Local(producer) => producer.push_with(|slot| {
                    slot.proto = proto;
                    slot.src = msg.src;
                    slot.dst = msg.dst;
                    slot.received_ns = now_ns;
                    slot.fill(bytes)
                }),
                Link::Remote(addr) => match &mut self.forwarder {
                    Some(f) => f.queue(*addr, bytes),
                    None => false,
                },
            };
            if !ok {
                self.push_failed += 1;
            }
        }
    }

    /// Publishes everything pushed in this batch (one release store per queue, a wake-up only
    /// for a parked processor) and sends the LAN batch.
    pub fn flush(&mut self) {
        for m in &mut self.members {
            if let Link::Local(p) = &mut m.link {
                p.commit();
            }
        }
        if let Some(f) = &mut self.forwarder {
            f.flush();
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> LinkStats {
        let (lan_sent, lan_errors) = self
            .forwarder
            .as_ref()
            .map_or((0, 0), |f| (f.sent, f.errors));
        LinkStats {
            push_failed: self.push_failed,
            lan_sent,
            lan_errors,
        }
    }
}

/// The router and its links, as one dispatcher thread drives them: refresh the snapshot once
/// per receive batch, decide and carry out each datagram, flush at the end of the batch.
pub struct Dispatch {
    /// The sans-IO core.
    pub router: Router,
    /// Its handoff executor.
    pub links: Links,
    out: Output,
}

impl Dispatch {
    /// Pairs `router` with `links` (built over the same members, in the same order).
    pub fn new(router: Router, links: Links) -> Self {
        Self {
            router,
            links,
            out: Output::new(),
        }
    }

    /// Starts a receive batch at `now_ns`: reads the load board into a fresh snapshot.
    pub fn begin_batch(&mut self, now_ns: u64) {
        self.links.refresh(now_ns);
    }

    /// Decides one datagram and queues its handoffs; returns the reply for its source, if any.
    pub fn handle(&mut self, now_ns: u64, msg: &Inbound<'_>) -> Option<&[u8]> {
        self.router
            .handle(now_ns, msg, self.links.snapshot(), &mut self.out);
        self.links.carry_out(now_ns, msg, &self.out);
        self.out.reply()
    }

    /// Ends a batch: publishes the queued handoffs to the processors.
    pub fn flush(&mut self) {
        self.links.flush();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::Relaxed;

    use super::*;

    #[test]
    fn refresh_copies_the_pending_invites_and_the_router_refuses_at_the_cap() {
        let (producer, _consumer) = fabric::channel(16).unwrap();
        let load = LoadReport::new(0);
        let mut member = LinkedMember::local(5070, 0, producer, Arc::clone(&load));
        member.spec.max_pending = 2;
        let cfg = RouterConfig::default();
        let now = fabric::monotonic_ns();
        let links = Links::new(vec![member], None, &cfg, now);
        let router = Router::new(cfg, links.specs());
        let mut d = Dispatch::new(router, links);
        let invite = |i: u32| {
            format!(
                "INVITE sip:svc@198.18.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.0.2:5060;branch=z9hG4bK-{i}\r\nMax-Forwards: 70\r\nFrom: <sip:a@198.18.0.2>;tag=f{i}\r\nTo: <sip:svc@198.18.0.1>\r\nCall-ID: c{i}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
            )
        };
        let send = |d: &mut Dispatch, i: u32| {
            let bytes = invite(i);
            let msg = Inbound {
                proto: PortProto::Sip,
                src: "198.18.0.2:5060".parse().unwrap(),
                dst: "198.18.0.1:5060".parse().unwrap(),
                payload: bytes.as_bytes(),
            };
            d.begin_batch(now);
            let reply = d.handle(now, &msg).map(<[u8]>::to_vec);
            d.flush();
            reply
        };
        load.pending_invites.store(1, Relaxed);
        d.links.refresh(now);
        assert_eq!(d.links.snapshot().members[0].pending_invites, 1);
        assert_eq!(send(&mut d, 1), None, "1 < 2: handed");
        load.pending_invites.store(2, Relaxed);
        let r = send(&mut d, 2).expect("at the cap: the dispatcher answers");
        assert!(r.starts_with(b"SIP/2.0 503 "));
        assert_eq!(d.router.stats().overload, 1);
    }
}
