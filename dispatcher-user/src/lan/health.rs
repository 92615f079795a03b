//! Health of processors on other hosts, as a pure state machine: datagrams and clock values in,
//! [`Event`]s out (board updates, up/down transitions, probes to send). No socket, no clock, no
//! shared memory here: [`super::Lan`]'s thread feeds it and carries the events out, and the
//! tests drive it with a fake clock.
//!
//! Rules:
//! - `health = reports`: a datagram from the processor's address that decodes as a load report
//!   under the shared key, names the processor's own id, and has a sequence number above the
//!   last one accepted (replays and reordering are refused) is accepted;
//! - `health = options`: any SIP response from the probed address proves it alive; probes go
//!   out every `probe_every_ns`;
//! - a processor is up from its first accepted report or answer until `report_timeout_ns`
//!   passes without one; it starts down (never heard from), so a dispatcher never sends
//!   dialogs to a processor it has not heard from.
use std::net::SocketAddr;

use processor::report::{Report, ReportError, ReportKey};

use super::{Health, LanStats};

/// A processor to watch.
#[derive(Debug, Clone, Copy)]
pub struct Watched {
    /// Its processor id (index in the dispatcher's pool, and the id its reports carry).
    pub id: usize,
    /// Where its reports come from and probes go.
    pub addr: SocketAddr,
    /// How it proves it is alive.
    pub health: Health,
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Store an accepted report of watched member `member` (heard at `now`).
    Report {
        /// Index in the watched list.
        member: usize,
        /// The report.
        report: Report,
        /// When it was heard.
        now: u64,
    },
    /// A probe of `member` was answered at `now`.
    ProbeAnswered {
        /// Index in the watched list.
        member: usize,
        /// When.
        now: u64,
    },
    /// `member` is up (first heard, or heard again after being down).
    Up {
        /// Index in the watched list.
        member: usize,
    },
    /// `member` is down: silent past the report timeout.
    Down {
        /// Index in the watched list.
        member: usize,
    },
    /// Send this OPTIONS probe.
    Probe {
        /// Destination.
        to: SocketAddr,
        /// The request.
        bytes: Vec<u8>,
    },
    /// A datagram was refused (already counted); for logging.
    Rejected {
        /// Its source.
        from: SocketAddr,
        /// Why, in words.
        why: &'static str,
    },
}

#[derive(Debug, Clone)]
struct State {
    w: Watched,
    last_seq: u64,
    last_heard: Option<u64>,
    up: bool,
}

/// The monitor of every processor on other hosts.
pub struct HealthMonitor {
    members: Vec<State>,
    key: ReportKey,
    probe_every_ns: u64,
    report_timeout_ns: u64,
    next_probe_ns: u64,
    probe_n: u64,
    local: Option<SocketAddr>,
    stats: LanStats,
}

impl HealthMonitor {
    /// A monitor of `watched`, all down until heard from. `local` is the address probes are
    /// sent from (named in their Via and From).
    pub fn new(
        watched: Vec<Watched>,
        key: ReportKey,
        probe_every_ns: u64,
        report_timeout_ns: u64,
        local: Option<SocketAddr>,
    ) -> Self {
        Self {
            members: watched
                .into_iter()
                .map(|w| State {
                    w,
                    last_seq: 0,
                    last_heard: None,
                    up: false,
                })
                .collect(),
            key,
            probe_every_ns,
            report_timeout_ns,
            next_probe_ns: 0,
            probe_n: 0,
            local,
            stats: LanStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> LanStats {
        self.stats
    }

    /// Processor id of watched member `member`.
    pub fn id(&self, member: usize) -> usize {
        self.members.get(member).map_or(usize::MAX, |m| m.w.id)
    }

    /// Address of watched member `member`.
    pub fn addr(&self, member: usize) -> SocketAddr {
        self.members
            .get(member)
            .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |m| m.w.addr)
    }

    /// Whether watched member `member` is up.
    pub fn is_up(&self, member: usize) -> bool {
        self.members.get(member).is_some_and(|m| m.up)
    }

    /// Time passes: probes that are due, and members that fell silent.
    pub fn poll(&mut self, now: u64, events: &mut Vec<Event>) {
        if now >= self.next_probe_ns {
            self.next_probe_ns = now + self.probe_every_ns;
            for m in &self.members {
                if m.w.health == Health::Options {
                    self.probe_n += 1;
                    self.stats.probes_sent += 1;
                    events.push(Event::Probe {
                        to: m.w.addr,
                        bytes: options_probe(m.w.addr, self.local, self.probe_n),
                    });
                }
            }
        }
        for (i, m) in self.members.iter_mut().enumerate() {
            let silent = m
                .last_heard
                .is_none_or(|t| now.saturating_sub(t) >= self.report_timeout_ns);
            if m.up && silent {
                m.up = false;
                self.stats.went_down += 1;
                events.push(Event::Down { member: i });
            }
        }
    }

    /// A datagram from `from` arrived on the report socket at `now`.
    pub fn on_datagram(&mut self, now: u64, from: SocketAddr, msg: &[u8], events: &mut Vec<Event>) {
        let Some(i) = self.members.iter().position(|m| m.w.addr == from) else {
            self.stats.rejected_unknown += 1;
            events.push(Event::Rejected {
                from,
                why: "not a configured processor",
            });
            return;
        };
        let m = &mut self.members[i];
        match m.w.health {
            // `None`'s own behaviour is the health helper's; until then it is watched like
            // `Options` (a SIP response proves it alive).
            Health::Options | Health::None => {
                if !msg.starts_with(b"SIP/2.0 ") {
                    events.push(Event::Rejected {
                        from,
                        why: "not a SIP response",
                    });
                    return;
                }
                self.stats.probe_answers += 1;
                events.push(Event::ProbeAnswered { member: i, now });
            }
            Health::Reports => match Report::decode(msg, &self.key) {
                Ok(r) if usize::from(r.id) != m.w.id => {
                    self.stats.rejected_unknown += 1;
                    events.push(Event::Rejected {
                        from,
                        why: "report names another processor id",
                    });
                    return;
                }
                Ok(r) if r.seq <= m.last_seq => {
                    self.stats.rejected_stale += 1;
                    events.push(Event::Rejected {
                        from,
                        why: "stale sequence number (replay or reordering)",
                    });
                    return;
                }
                Ok(r) => {
                    m.last_seq = r.seq;
                    self.stats.reports += 1;
                    events.push(Event::Report {
                        member: i,
                        report: r,
                        now,
                    });
                }
                Err(ReportError::Auth) => {
                    self.stats.rejected_auth += 1;
                    events.push(Event::Rejected {
                        from,
                        why: "authentication failed (wrong --report-key-file?)",
                    });
                    return;
                }
                Err(_) => {
                    self.stats.rejected_malformed += 1;
                    events.push(Event::Rejected {
                        from,
                        why: "not a load report of this version",
                    });
                    return;
                }
            },
        }
        m.last_heard = Some(now);
        if !m.up {
            m.up = true;
            events.push(Event::Up { member: i });
        }
    }
}

/// An OPTIONS request probing `to` (RFC 3261 §11), from the report socket.
fn options_probe(to: SocketAddr, local: Option<SocketAddr>, n: u64) -> Vec<u8> {
    let me = local.map_or_else(|| "0.0.0.0:0".to_owned(), |a| a.to_string());
    format!(
        "OPTIONS sip:{to} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-syprobe-{n}\r\nMax-Forwards: 70\r\nFrom: <sip:switchyard@{me}>;tag=syprobe\r\nTo: <sip:{to}>\r\nCall-ID: syprobe-{n}@{me}\r\nCSeq: {n} OPTIONS\r\nContent-Length: 0\r\n\r\n",
        n = n % 1_000_000_000
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn addr(p: u16) -> SocketAddr {
        SocketAddr::from(([198, 18, 0, 11], p))
    }

    fn monitor() -> (HealthMonitor, ReportKey) {
        let key = ReportKey::new(b"k");
        let m = HealthMonitor::new(
            vec![
                Watched {
                    id: 2,
                    addr: addr(5070),
                    health: Health::Reports,
                },
                Watched {
                    id: 3,
                    addr: addr(5071),
                    health: Health::Options,
                },
            ],
            key.clone(),
            200 * MS,
            800 * MS,
            Some(addr(9000)),
        );
        (m, key)
    }

    fn report(id: u16, seq: u64) -> Report {
        Report {
            id,
            seq,
            units_in_use: 4,
            ..Report::default()
        }
    }

    #[test]
    fn reports_bring_a_processor_up_and_silence_takes_it_down() {
        let (mut m, key) = monitor();
        let mut ev = vec![];
        m.poll(0, &mut ev);
        assert!(!m.is_up(0), "never heard from: down");
        assert!(ev.iter().all(|e| !matches!(e, Event::Up { .. })));
        ev.clear();
        m.on_datagram(10 * MS, addr(5070), &report(2, 1).encode(&key), &mut ev);
        assert!(matches!(ev[0], Event::Report { member: 0, now, .. } if now == 10 * MS));
        assert_eq!(ev[1], Event::Up { member: 0 });
        ev.clear();
        m.poll(10 * MS + 799 * MS, &mut ev);
        assert!(m.is_up(0), "799 ms of silence is within the timeout");
        m.poll(10 * MS + 800 * MS, &mut ev);
        assert!(!m.is_up(0));
        assert!(ev.contains(&Event::Down { member: 0 }));
        assert_eq!(m.stats().went_down, 1);
        ev.clear();
        m.on_datagram(2_000 * MS, addr(5070), &report(2, 2).encode(&key), &mut ev);
        assert!(
            ev.contains(&Event::Up { member: 0 }),
            "heard again: up again"
        );
    }

    #[test]
    fn forged_replayed_and_foreign_reports_are_refused_and_counted() {
        let (mut m, key) = monitor();
        let mut ev = vec![];
        m.on_datagram(MS, addr(5070), &report(2, 5).encode(&key), &mut ev);
        m.on_datagram(MS, addr(5070), &report(2, 5).encode(&key), &mut ev); // replay
        m.on_datagram(
            MS,
            addr(5070),
            &report(2, 6).encode(&ReportKey::new(b"x")),
            &mut ev,
        );
        m.on_datagram(MS, addr(5070), &report(3, 7).encode(&key), &mut ev); // wrong id
        m.on_datagram(MS, addr(5070), b"garbage", &mut ev);
        m.on_datagram(MS, addr(6000), &report(2, 8).encode(&key), &mut ev); // stranger
        let s = m.stats();
        assert_eq!(
            (
                s.reports,
                s.rejected_stale,
                s.rejected_auth,
                s.rejected_unknown,
                s.rejected_malformed
            ),
            (1, 1, 1, 2, 1)
        );
        let reports = ev
            .iter()
            .filter(|e| matches!(e, Event::Report { .. }))
            .count();
        assert_eq!(reports, 1, "only the first report reaches the board");
    }

    #[test]
    fn options_processors_are_probed_on_schedule_and_any_response_counts() {
        let (mut m, _) = monitor();
        let mut ev = vec![];
        m.poll(0, &mut ev);
        let probes: Vec<_> = ev
            .iter()
            .filter_map(|e| match e {
                Event::Probe { to, bytes } => Some((*to, bytes.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(probes.len(), 1, "only the options processor is probed");
        assert_eq!(probes[0].0, addr(5071));
        let text = String::from_utf8(probes[0].1.clone()).unwrap();
        assert!(
            text.starts_with("OPTIONS sip:198.18.0.11:5071 SIP/2.0\r\n"),
            "{text}"
        );
        assert!(text.contains("Via: SIP/2.0/UDP 198.18.0.11:9000;branch=z9hG4bK-"));
        ev.clear();
        m.poll(100 * MS, &mut ev);
        assert!(ev.is_empty(), "next probe only after 200 ms: {ev:?}");
        m.poll(200 * MS, &mut ev);
        assert_eq!(ev.len(), 1);
        ev.clear();
        m.on_datagram(
            210 * MS,
            addr(5071),
            b"OPTIONS sip:x SIP/2.0\r\n\r\n",
            &mut ev,
        );
        assert!(!m.is_up(1), "a request is no answer");
        m.on_datagram(210 * MS, addr(5071), b"SIP/2.0 200 OK\r\n\r\n", &mut ev);
        assert!(m.is_up(1));
        assert_eq!(m.stats().probe_answers, 1);
    }
}
