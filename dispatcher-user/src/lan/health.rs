//! Health of processors on other hosts, as a pure state machine: datagrams and clock values in,
//! [`Event`]s out (board updates, up/down transitions with their reason, probes to send). No
//! socket, no clock, no shared memory here: [`super::Lan`]'s thread feeds it and carries the
//! events out, and the tests drive it with a fake clock.
//!
//! Rules, per processor ([`HealthSpec::mode`]):
//! - `reports`: a datagram from the processor's address that decodes as a load report under the
//!   shared key, names the processor's own id, and has a sequence number above the last one
//!   accepted (replays and reordering are refused) is accepted. Up from the first accepted
//!   report until `report_timeout_ns` passes without one.
//! - `options`: an OPTIONS probe every `probe_every_ns`. An answer (matched to its probe by
//!   Call-ID; an answer without our Call-ID is matched by source address) whose status code is
//!   in [`HealthSpec::up`] is a good probe; any other code, or no answer before the next probe
//!   is due (or within `report_timeout_ns`), is a failed one. `fail` failed probes in a row take
//!   an up processor down, `ok` good ones in a row bring a down one up.
//! - `none`: always up (SIP servers that answer no OPTIONS, such as SIPp's UAS): no probes, no
//!   reports, datagrams from it are refused as unknown.
//!
//! `reports` and `options` processors start down (a dispatcher never sends dialogs to a
//! processor that has not proven itself), and every processor's initial state is announced as
//! an event (Kamailio #4906: no dst-down event at start), at start and when added at runtime.
//! Processors can be added, removed and changed while it runs ([`HealthMonitor::add`],
//! [`HealthMonitor::remove`], [`HealthMonitor::update`]); a change that keeps the mode keeps the
//! up/down state (Kamailio #4212: probing state wrong after a runtime add).
use std::{fmt, net::SocketAddr};

use processor::report::{Report, ReportError, ReportKey};

use super::{Health, HealthSpec, LanStats};

/// A processor to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    /// Its processor id (index in the dispatcher's pool, and the id its reports carry).
    pub id: usize,
    /// Where its reports come from and probes go.
    pub addr: SocketAddr,
    /// How it proves it is alive, and the thresholds.
    pub health: HealthSpec,
}

/// Why a processor is up or down: what the operator reads in the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Initial state of a `reports` processor: down until its first accepted report.
    AwaitingReport,
    /// Initial state of an `options` processor: down until `ok` good answers.
    AwaitingAnswer {
        /// Good answers needed.
        ok: u32,
    },
    /// `health = none`: always up.
    AlwaysUp,
    /// A load report was accepted.
    Reported,
    /// `n` probes in a row were answered with an up code (the last one `code`).
    Answered {
        /// The last status code.
        code: u16,
        /// Good answers in a row.
        n: u32,
    },
    /// No load report for `ms` milliseconds.
    NoReport {
        /// The report timeout, in ms.
        ms: u64,
    },
    /// `n` probes in a row failed; the last was answered with `code` (outside the up codes),
    /// or not at all (`None`).
    ProbeFailed {
        /// The last failed probe's status code, or `None` when it got no answer.
        code: Option<u16>,
        /// Failed probes in a row.
        n: u32,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::AwaitingReport => f.write_str("down until its first load report"),
            Self::AwaitingAnswer { ok } => {
                write!(f, "down until {ok} OPTIONS probe(s) in a row are answered")
            }
            Self::AlwaysUp => f.write_str("health=none: always up"),
            Self::Reported => f.write_str("load report accepted"),
            Self::Answered { code, n } => {
                write!(f, "probe answered {code} {} ({n} in a row)", phrase(code))
            }
            Self::NoReport { ms } => write!(f, "no load report for {ms} ms"),
            Self::ProbeFailed {
                code: Some(code),
                n,
            } => write!(
                f,
                "probe answered {code} {} ({n} failed probe(s) in a row)",
                phrase(code)
            ),
            Self::ProbeFailed { code: None, n } => write!(f, "no answer to {n} probe(s) in a row"),
        }
    }
}

/// The reason phrase of common status codes (for the events; the wire's own phrase is not
/// trusted into logs).
fn phrase(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        483 => "Too Many Hops",
        486 => "Busy Here",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        600 => "Busy Everywhere",
        603 => "Decline",
        _ => "",
    }
}

/// What the shell must do. Processors are named by their id (`id`), which stays the same while
/// others are added and removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Store an accepted report of processor `id` (heard at `now`).
    Report {
        /// Processor id.
        id: usize,
        /// The report.
        report: Report,
        /// When it was heard.
        now: u64,
    },
    /// A probe of `id` was answered (with any code) at `now`.
    ProbeAnswered {
        /// Processor id.
        id: usize,
        /// When.
        now: u64,
    },
    /// `id` is up: announced at start (`health = none`), or it proved itself.
    Up {
        /// Processor id.
        id: usize,
        /// Its address.
        addr: SocketAddr,
        /// Why.
        reason: Reason,
    },
    /// `id` is down: its initial state (announced at start), or it failed.
    Down {
        /// Processor id.
        id: usize,
        /// Its address.
        addr: SocketAddr,
        /// Why.
        reason: Reason,
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
    /// Whether its initial state has been announced.
    announced: bool,
    last_seq: u64,
    last_heard: Option<u64>,
    up: bool,
    /// The unanswered probe: (its number, when it was sent).
    outstanding: Option<(u64, u64)>,
    good_run: u32,
    fail_run: u32,
}

impl State {
    fn new(w: Watched) -> Self {
        Self {
            up: w.health.mode == Health::None,
            w,
            announced: false,
            last_seq: 0,
            last_heard: None,
            outstanding: None,
            good_run: 0,
            fail_run: 0,
        }
    }
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
    /// A monitor of `watched`, each in its initial state (announced by the first
    /// [`HealthMonitor::poll`]). `local` is the address probes are sent from (named in their
    /// Via and From).
    pub fn new(
        watched: Vec<Watched>,
        key: ReportKey,
        probe_every_ns: u64,
        report_timeout_ns: u64,
        local: Option<SocketAddr>,
    ) -> Self {
        Self {
            members: watched.into_iter().map(State::new).collect(),
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

    /// Ids of the watched processors, in order.
    pub fn ids(&self) -> Vec<usize> {
        self.members.iter().map(|m| m.w.id).collect()
    }

    fn get(&self, id: usize) -> Option<&State> {
        self.members.iter().find(|m| m.w.id == id)
    }

    /// Address of processor `id`.
    pub fn addr(&self, id: usize) -> Option<SocketAddr> {
        self.get(id).map(|m| m.w.addr)
    }

    /// How processor `id` is watched.
    pub fn mode(&self, id: usize) -> Option<Health> {
        self.get(id).map(|m| m.w.health.mode)
    }

    /// Whether processor `id` is watched and up.
    pub fn is_up(&self, id: usize) -> bool {
        self.get(id).is_some_and(|m| m.up)
    }

    /// Starts watching `w` (its initial state is announced by the next poll). A processor
    /// already watched under that id is changed instead ([`HealthMonitor::update`]).
    pub fn add(&mut self, w: Watched) {
        if self.get(w.id).is_some() {
            self.update(w);
        } else {
            self.members.push(State::new(w));
        }
    }

    /// Stops watching processor `id`: no more probes; its reports are refused as unknown.
    /// Returns whether it was watched.
    pub fn remove(&mut self, id: usize) -> bool {
        let before = self.members.len();
        self.members.retain(|m| m.w.id != id);
        self.members.len() != before
    }

    /// Changes how processor `id` is watched (address, mode, thresholds, up codes). With the
    /// same mode it keeps its up/down state and runs (the new thresholds apply from the next
    /// probe); a new mode starts over from that mode's initial state, announced again. An id
    /// not watched is added.
    pub fn update(&mut self, w: Watched) {
        let Some(m) = self.members.iter_mut().find(|m| m.w.id == w.id) else {
            self.members.push(State::new(w));
            return;
        };
        if m.w.health.mode == w.health.mode {
            if m.w.addr != w.addr {
                // Answers to probes sent to the old address cannot come from the new one.
                m.outstanding = None;
            }
            m.w = w;
        } else {
            *m = State::new(w);
        }
    }

    /// Time passes: initial states to announce, probes that are due (and the ones that went
    /// unanswered), and members that fell silent.
    pub fn poll(&mut self, now: u64, events: &mut Vec<Event>) {
        for m in self.members.iter_mut().filter(|m| !m.announced) {
            m.announced = true;
            let (id, addr) = (m.w.id, m.w.addr);
            events.push(match m.w.health.mode {
                Health::None => Event::Up {
                    id,
                    addr,
                    reason: Reason::AlwaysUp,
                },
                Health::Reports => Event::Down {
                    id,
                    addr,
                    reason: Reason::AwaitingReport,
                },
                Health::Options => Event::Down {
                    id,
                    addr,
                    reason: Reason::AwaitingAnswer {
                        ok: m.w.health.ok.max(1),
                    },
                },
            });
        }
        let probe_due = now >= self.next_probe_ns;
        if probe_due {
            self.next_probe_ns = now + self.probe_every_ns;
        }
        for i in 0..self.members.len() {
            match self.members[i].w.health.mode {
                Health::Options => {
                    let timed_out = self.members[i]
                        .outstanding
                        .is_some_and(|(_, at)| now.saturating_sub(at) >= self.report_timeout_ns);
                    if self.members[i].outstanding.is_some() && (probe_due || timed_out) {
                        self.members[i].outstanding = None;
                        self.probe_result(i, None, events);
                    }
                    if probe_due {
                        self.probe_n += 1;
                        self.stats.probes_sent += 1;
                        let m = &mut self.members[i];
                        m.outstanding = Some((self.probe_n, now));
                        events.push(Event::Probe {
                            to: m.w.addr,
                            bytes: options_probe(m.w.addr, self.local, self.probe_n),
                        });
                    }
                }
                Health::Reports => {
                    let m = &mut self.members[i];
                    let silent = m
                        .last_heard
                        .is_none_or(|t| now.saturating_sub(t) >= self.report_timeout_ns);
                    if m.up && silent {
                        m.up = false;
                        self.stats.went_down += 1;
                        events.push(Event::Down {
                            id: m.w.id,
                            addr: m.w.addr,
                            reason: Reason::NoReport {
                                ms: self.report_timeout_ns / 1_000_000,
                            },
                        });
                    }
                }
                Health::None => {}
            }
        }
    }

    /// One probe of member `i` came back with `code` (in the up codes or not), or not at all
    /// (`None`): the runs and, at a threshold, the transition.
    fn probe_result(&mut self, i: usize, code: Option<u16>, events: &mut Vec<Event>) {
        let m = &mut self.members[i];
        let good = code.is_some_and(|c| m.w.health.is_up_code(c));
        if good {
            m.good_run = m.good_run.saturating_add(1);
            m.fail_run = 0;
            if !m.up && m.good_run >= m.w.health.ok.max(1) {
                m.up = true;
                self.stats.came_up += 1;
                events.push(Event::Up {
                    id: m.w.id,
                    addr: m.w.addr,
                    reason: Reason::Answered {
                        code: code.unwrap_or_default(),
                        n: m.good_run,
                    },
                });
            }
        } else {
            self.stats.probes_failed += 1;
            m.fail_run = m.fail_run.saturating_add(1);
            m.good_run = 0;
            if m.up && m.fail_run >= m.w.health.fail.max(1) {
                m.up = false;
                self.stats.went_down += 1;
                events.push(Event::Down {
                    id: m.w.id,
                    addr: m.w.addr,
                    reason: Reason::ProbeFailed {
                        code,
                        n: m.fail_run,
                    },
                });
            }
        }
    }

    /// A datagram from `from` arrived on the report socket at `now`.
    pub fn on_datagram(&mut self, now: u64, from: SocketAddr, msg: &[u8], events: &mut Vec<Event>) {
        let Some(i) = self.members.iter().position(|m| m.w.addr == from) else {
            self.stats.rejected_unknown += 1;
            events.push(Event::Rejected {
                from,
                why: "not a watched processor",
            });
            return;
        };
        match self.members[i].w.health.mode {
            Health::None => {
                self.stats.rejected_unknown += 1;
                events.push(Event::Rejected {
                    from,
                    why: "a health=none processor: its datagrams are not read",
                });
            }
            Health::Options => self.on_answer(i, now, from, msg, events),
            Health::Reports => self.on_report(i, now, from, msg, events),
        }
    }

    fn on_answer(
        &mut self,
        i: usize,
        now: u64,
        from: SocketAddr,
        msg: &[u8],
        events: &mut Vec<Event>,
    ) {
        let Some(code) = status_code(msg) else {
            events.push(Event::Rejected {
                from,
                why: "not a SIP response",
            });
            return;
        };
        let m = &mut self.members[i];
        let matches = match (probe_number(msg), m.outstanding) {
            (_, None) => false,
            (Some(n), Some((want, _))) => n == want,
            // No Call-ID of ours: matched by source address.
            (None, Some(_)) => true,
        };
        if !matches {
            events.push(Event::Rejected {
                from,
                why: "answer to no outstanding probe (late, duplicate or provisional after final)",
            });
            return;
        }
        if code < 200 {
            // Provisional: the final answer is still to come.
            return;
        }
        m.outstanding = None;
        m.last_heard = Some(now);
        self.stats.probe_answers += 1;
        let id = m.w.id;
        events.push(Event::ProbeAnswered { id, now });
        self.probe_result(i, Some(code), events);
    }

    fn on_report(
        &mut self,
        i: usize,
        now: u64,
        from: SocketAddr,
        msg: &[u8],
        events: &mut Vec<Event>,
    ) {
        let m = &mut self.members[i];
        match Report::decode(msg, &self.key) {
            Ok(r) if usize::from(r.id) != m.w.id => {
                self.stats.rejected_unknown += 1;
                events.push(Event::Rejected {
                    from,
                    why: "report names another processor id",
                });
            }
            Ok(r) if r.seq <= m.last_seq => {
                self.stats.rejected_stale += 1;
                events.push(Event::Rejected {
                    from,
                    why: "stale sequence number (replay or reordering)",
                });
            }
            Ok(r) => {
                m.last_seq = r.seq;
                m.last_heard = Some(now);
                self.stats.reports += 1;
                events.push(Event::Report {
                    id: m.w.id,
                    report: r,
                    now,
                });
                if !m.up {
                    m.up = true;
                    self.stats.came_up += 1;
                    events.push(Event::Up {
                        id: m.w.id,
                        addr: m.w.addr,
                        reason: Reason::Reported,
                    });
                }
            }
            Err(ReportError::Auth) => {
                self.stats.rejected_auth += 1;
                events.push(Event::Rejected {
                    from,
                    why: "authentication failed (wrong --report-key-file?)",
                });
            }
            Err(_) => {
                self.stats.rejected_malformed += 1;
                events.push(Event::Rejected {
                    from,
                    why: "not a load report of this version",
                });
            }
        }
    }
}

/// The status code of a SIP response (`SIP/2.0 NNN ...`), read totally: `None` for anything
/// else (requests, garbage, a code outside 100..=699).
pub fn status_code(msg: &[u8]) -> Option<u16> {
    let rest = msg.strip_prefix(b"SIP/2.0 ")?;
    let digits = rest.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if rest
        .get(3)
        .is_some_and(|b| !matches!(b, b' ' | b'\r' | b'\n'))
    {
        return None;
    }
    let code = digits
        .iter()
        .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    (100..=699).contains(&code).then_some(code)
}

/// The probe number in the Call-ID of an answer to one of our probes (`syprobe-N@...`), if it
/// carries one.
fn probe_number(msg: &[u8]) -> Option<u64> {
    msg.split(|&b| b == b'\n').find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|&b| b == b':')?;
        let name = line[..colon].trim_ascii();
        if !(name.eq_ignore_ascii_case(b"call-id") || name.eq_ignore_ascii_case(b"i")) {
            return None;
        }
        let value = line[colon + 1..].trim_ascii().strip_prefix(b"syprobe-")?;
        let end = value.iter().position(|b| !b.is_ascii_digit())?;
        std::str::from_utf8(&value[..end]).ok()?.parse().ok()
    })
}

/// An OPTIONS request probing `to` (RFC 3261 §11), from the report socket; probe number `n`
/// is in its Call-ID, CSeq and branch, so its answer is matched to it.
fn options_probe(to: SocketAddr, local: Option<SocketAddr>, n: u64) -> Vec<u8> {
    let me = local.map_or_else(|| "0.0.0.0:0".to_owned(), |a| a.to_string());
    format!(
        "OPTIONS sip:{to} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-syprobe-{n}\r\nMax-Forwards: 70\r\nFrom: <sip:switchyard@{me}>;tag=syprobe\r\nTo: <sip:{to}>\r\nCall-ID: syprobe-{n}@{me}\r\nCSeq: {c} OPTIONS\r\nContent-Length: 0\r\n\r\n",
        c = n % 1_000_000_000
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

    fn watched(id: usize, port: u16, mode: Health) -> Watched {
        Watched {
            id,
            addr: addr(port),
            health: HealthSpec::new(mode),
        }
    }

    /// Processor 2 on reports, 3 on options (fail=3, ok=2, 2xx), probes every 200 ms, report
    /// timeout 800 ms.
    fn monitor() -> (HealthMonitor, ReportKey) {
        let key = ReportKey::new(b"k");
        let m = HealthMonitor::new(
            vec![
                watched(2, 5070, Health::Reports),
                watched(3, 5071, Health::Options),
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

    /// The probes in `ev`, as (destination, probe number from the Call-ID).
    fn probes(ev: &[Event]) -> Vec<(SocketAddr, u64)> {
        ev.iter()
            .filter_map(|e| match e {
                Event::Probe { to, bytes } => Some((*to, probe_number(bytes).unwrap())),
                _ => None,
            })
            .collect()
    }

    fn answer(n: u64, code: u16) -> Vec<u8> {
        format!("SIP/2.0 {code} Whatever\r\nVia: SIP/2.0/UDP x;branch=z9hG4bK-syprobe-{n}\r\nCall-ID: syprobe-{n}@198.18.0.11:9000\r\nCSeq: {n} OPTIONS\r\n\r\n").into_bytes()
    }

    fn transitions(ev: &[Event]) -> Vec<(usize, bool, Reason)> {
        ev.iter()
            .filter_map(|e| match e {
                Event::Up { id, reason, .. } => Some((*id, true, *reason)),
                Event::Down { id, reason, .. } => Some((*id, false, *reason)),
                _ => None,
            })
            .collect()
    }

    /// One probe round of processor 3 at `t` ms, answered with `code` (or not).
    fn round(m: &mut HealthMonitor, t: u64, code: Option<u16>) -> Vec<Event> {
        let mut ev = vec![];
        m.poll(t * MS, &mut ev);
        let p = probes(&ev);
        assert_eq!(p.len(), 1, "one probe due at {t} ms: {ev:?}");
        if let Some(c) = code {
            m.on_datagram(t * MS + MS, p[0].0, &answer(p[0].1, c), &mut ev);
        }
        ev
    }

    #[test]
    fn initial_states_are_announced_once() {
        let key = ReportKey::new(b"k");
        let mut m = HealthMonitor::new(
            vec![
                watched(0, 5070, Health::Reports),
                watched(1, 5071, Health::Options),
                watched(2, 5072, Health::None),
            ],
            key,
            200 * MS,
            800 * MS,
            None,
        );
        let mut ev = vec![];
        m.poll(0, &mut ev);
        assert_eq!(
            transitions(&ev),
            vec![
                (0, false, Reason::AwaitingReport),
                (1, false, Reason::AwaitingAnswer { ok: 2 }),
                (2, true, Reason::AlwaysUp),
            ]
        );
        assert_eq!(
            Reason::AwaitingAnswer { ok: 2 }.to_string(),
            "down until 2 OPTIONS probe(s) in a row are answered"
        );
        ev.clear();
        m.poll(10 * MS, &mut ev);
        assert!(transitions(&ev).is_empty(), "announced once: {ev:?}");
    }

    #[test]
    fn reports_bring_a_processor_up_and_silence_takes_it_down() {
        let (mut m, key) = monitor();
        let mut ev = vec![];
        m.poll(0, &mut ev);
        assert!(!m.is_up(2), "never heard from: down");
        ev.clear();
        m.on_datagram(10 * MS, addr(5070), &report(2, 1).encode(&key), &mut ev);
        assert!(matches!(ev[0], Event::Report { id: 2, now, .. } if now == 10 * MS));
        assert_eq!(transitions(&ev), vec![(2, true, Reason::Reported)]);
        ev.clear();
        m.poll(10 * MS + 799 * MS, &mut ev);
        assert!(m.is_up(2), "799 ms of silence is within the timeout");
        ev.clear();
        m.poll(10 * MS + 800 * MS, &mut ev);
        assert!(!m.is_up(2));
        let t = transitions(&ev);
        assert!(
            t.contains(&(2, false, Reason::NoReport { ms: 800 })),
            "{t:?}"
        );
        assert_eq!(
            Reason::NoReport { ms: 800 }.to_string(),
            "no load report for 800 ms"
        );
        ev.clear();
        m.on_datagram(2_000 * MS, addr(5070), &report(2, 2).encode(&key), &mut ev);
        assert!(m.is_up(2), "heard again: up again");
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
    fn options_processors_are_probed_on_schedule() {
        let (mut m, _) = monitor();
        let mut ev = vec![];
        m.poll(0, &mut ev);
        let p: Vec<_> = ev
            .iter()
            .filter_map(|e| match e {
                Event::Probe { to, bytes } => Some((*to, bytes.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(p.len(), 1, "only the options processor is probed");
        assert_eq!(p[0].0, addr(5071));
        let text = String::from_utf8(p[0].1.clone()).unwrap();
        assert!(
            text.starts_with("OPTIONS sip:198.18.0.11:5071 SIP/2.0\r\n"),
            "{text}"
        );
        assert!(text.contains("Via: SIP/2.0/UDP 198.18.0.11:9000;branch=z9hG4bK-syprobe-1\r\n"));
        assert!(text.contains("Call-ID: syprobe-1@198.18.0.11:9000\r\nCSeq: 1 OPTIONS\r\n"));
        ev.clear();
        m.poll(100 * MS, &mut ev);
        assert!(ev.is_empty(), "next probe only after 200 ms: {ev:?}");
        m.poll(200 * MS, &mut ev);
        assert_eq!(probes(&ev).len(), 1);
        ev.clear();
        m.on_datagram(
            210 * MS,
            addr(5071),
            b"OPTIONS sip:x SIP/2.0\r\n\r\n",
            &mut ev,
        );
        assert_eq!(m.stats().probe_answers, 0, "a request is no answer");
    }

    #[test]
    fn ok_good_answers_bring_it_up_and_fail_failed_ones_take_it_down() {
        let (mut m, _) = monitor();
        let ev = round(&mut m, 0, Some(200));
        assert!(!m.is_up(3), "one good answer of ok=2");
        assert!(ev.contains(&Event::ProbeAnswered { id: 3, now: MS }));
        let ev = round(&mut m, 200, Some(200));
        assert_eq!(
            transitions(&ev),
            vec![(3, true, Reason::Answered { code: 200, n: 2 })]
        );
        // 503 twice: still up (fail=3); a good answer in between resets the run.
        round(&mut m, 400, Some(503));
        round(&mut m, 600, Some(503));
        assert!(m.is_up(3));
        round(&mut m, 800, Some(200));
        round(&mut m, 1000, Some(503));
        round(&mut m, 1200, Some(503));
        assert!(m.is_up(3), "the run was reset by the 200");
        let ev = round(&mut m, 1400, Some(503));
        let reason = Reason::ProbeFailed {
            code: Some(503),
            n: 3,
        };
        assert_eq!(transitions(&ev), vec![(3, false, reason)]);
        assert_eq!(
            reason.to_string(),
            "probe answered 503 Service Unavailable (3 failed probe(s) in a row)"
        );
        assert!(!m.is_up(3));
        assert_eq!((m.stats().went_down, m.stats().came_up), (1, 1));
        // Back: one 200 is not enough, the second is.
        round(&mut m, 1600, Some(200));
        assert!(!m.is_up(3));
        round(&mut m, 1800, Some(200));
        assert!(m.is_up(3));
    }

    #[test]
    fn no_answer_counts_as_a_failed_probe() {
        let (mut m, _) = monitor();
        round(&mut m, 0, Some(200));
        round(&mut m, 200, Some(200));
        assert!(m.is_up(3));
        round(&mut m, 400, None);
        round(&mut m, 600, None);
        let ev = round(&mut m, 800, None);
        assert!(
            transitions(&ev).is_empty(),
            "the third is still outstanding"
        );
        // The third unanswered probe fails when the next is due.
        let ev = round(&mut m, 1000, None);
        let reason = Reason::ProbeFailed { code: None, n: 3 };
        assert_eq!(transitions(&ev), vec![(3, false, reason)]);
        assert_eq!(reason.to_string(), "no answer to 3 probe(s) in a row");
        assert_eq!(m.stats().probes_failed, 3);
    }

    #[test]
    fn unanswered_past_the_report_timeout_fails_even_with_a_slow_probe_interval() {
        let key = ReportKey::new(b"k");
        let mut spec = HealthSpec::new(Health::Options);
        (spec.ok, spec.fail) = (1, 1);
        let mut m = HealthMonitor::new(
            vec![Watched {
                id: 0,
                addr: addr(5071),
                health: spec,
            }],
            key,
            10_000 * MS,
            800 * MS,
            None,
        );
        let mut ev = vec![];
        m.poll(0, &mut ev);
        let p = probes(&ev);
        m.on_datagram(MS, p[0].0, &answer(p[0].1, 200), &mut ev);
        assert!(m.is_up(0));
        ev.clear();
        m.poll(10_000 * MS, &mut ev);
        m.poll(10_799 * MS, &mut ev);
        assert!(m.is_up(0));
        m.poll(10_800 * MS, &mut ev);
        assert!(!m.is_up(0), "800 ms without an answer: failed");
    }

    #[test]
    fn answers_are_matched_to_their_probe() {
        let (mut m, _) = monitor();
        let mut ev = vec![];
        m.poll(0, &mut ev);
        let n = probes(&ev)[0].1;
        // An answer to some other probe number (late, or forged) does not count.
        m.on_datagram(MS, addr(5071), &answer(n + 7, 200), &mut ev);
        // A provisional answer does not end the probe.
        m.on_datagram(MS, addr(5071), &answer(n, 100), &mut ev);
        assert_eq!(m.stats().probe_answers, 0);
        m.on_datagram(MS, addr(5071), &answer(n, 200), &mut ev);
        // A duplicate of the final answer does not count twice.
        m.on_datagram(MS, addr(5071), &answer(n, 200), &mut ev);
        assert_eq!(m.stats().probe_answers, 1);
        // An answer without our Call-ID is matched by its source address.
        ev.clear();
        m.poll(200 * MS, &mut ev);
        m.on_datagram(201 * MS, addr(5071), b"SIP/2.0 200 OK\r\n\r\n", &mut ev);
        assert_eq!(m.stats().probe_answers, 2);
        assert!(m.is_up(3));
    }

    #[test]
    fn custom_up_codes() {
        let key = ReportKey::new(b"k");
        let mut spec = HealthSpec::new(Health::Options);
        spec.up = HealthSpec::parse_up("200-299;404").unwrap();
        (spec.ok, spec.fail) = (1, 1);
        let mut m = HealthMonitor::new(
            vec![Watched {
                id: 3,
                addr: addr(5071),
                health: spec,
            }],
            key,
            200 * MS,
            800 * MS,
            None,
        );
        round(&mut m, 0, Some(404));
        assert!(m.is_up(3), "404 is an up code here");
        round(&mut m, 200, Some(204));
        assert!(m.is_up(3));
        round(&mut m, 400, Some(405));
        assert!(!m.is_up(3), "405 is not");
    }

    #[test]
    fn status_codes_are_read_totally() {
        assert_eq!(
            status_code(b"SIP/2.0 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(status_code(b"SIP/2.0 200\r\n"), Some(200));
        assert_eq!(status_code(b"SIP/2.0 200"), Some(200));
        for bad in [
            &b""[..],
            b"SIP/2.0 ",
            b"SIP/2.0 20",
            b"SIP/2.0 2000 OK",
            b"SIP/2.0 099 x",
            b"SIP/2.0 700 x",
            b"SIP/2.0 -12 x",
            b"SIP/2.0 \xff\xfe\xfd",
            b"OPTIONS sip:x SIP/2.0",
            b"SIP/1.0 200 OK",
        ] {
            assert_eq!(status_code(bad), None, "{bad:?}");
        }
        // Never panics on any prefix of any bytes.
        let msg = answer(12, 486);
        for i in 0..msg.len() {
            let _ = status_code(&msg[..i]);
            let _ = probe_number(&msg[..i]);
        }
        assert_eq!(probe_number(&msg), Some(12));
        assert_eq!(probe_number(b"i: syprobe-9@h\r\n"), Some(9));
        assert_eq!(probe_number(b"Call-ID: other-9@h\r\n"), None);
    }

    #[test]
    fn health_none_is_up_without_probes_or_reports() {
        let key = ReportKey::new(b"k");
        let mut m = HealthMonitor::new(
            vec![watched(5, 5075, Health::None)],
            key.clone(),
            200 * MS,
            800 * MS,
            None,
        );
        let mut ev = vec![];
        for t in 0..50 {
            m.poll(t * 100 * MS, &mut ev);
        }
        assert!(m.is_up(5), "silence never takes it down");
        assert!(probes(&ev).is_empty(), "never probed");
        assert_eq!(transitions(&ev), vec![(5, true, Reason::AlwaysUp)]);
        m.on_datagram(MS, addr(5075), &report(5, 1).encode(&key), &mut ev);
        assert_eq!(m.stats().reports, 0, "its datagrams are not read");
        assert!(!ev.iter().any(|e| matches!(e, Event::Report { .. })));
    }

    #[test]
    fn processors_are_added_removed_and_changed_at_runtime() {
        let key = ReportKey::new(b"k");
        let mut m = HealthMonitor::new(vec![], key.clone(), 200 * MS, 800 * MS, None);
        let mut ev = vec![];
        m.poll(0, &mut ev);
        assert!(ev.is_empty(), "nothing watched: {ev:?}");
        // Added while running: announced (down until proven) and probed right away.
        m.add(watched(7, 5077, Health::Options));
        m.add(watched(8, 5078, Health::Reports));
        let mut ev = vec![];
        m.poll(200 * MS, &mut ev);
        assert_eq!(
            transitions(&ev),
            vec![
                (7, false, Reason::AwaitingAnswer { ok: 2 }),
                (8, false, Reason::AwaitingReport)
            ]
        );
        let p = probes(&ev);
        assert_eq!(p.len(), 1);
        m.on_datagram(201 * MS, addr(5077), &answer(p[0].1, 200), &mut ev);
        m.on_datagram(201 * MS, addr(5078), &report(8, 1).encode(&key), &mut ev);
        ev.clear();
        m.poll(400 * MS, &mut ev);
        let p = probes(&ev);
        m.on_datagram(401 * MS, addr(5077), &answer(p[0].1, 200), &mut ev);
        assert!(m.is_up(7) && m.is_up(8));

        // Same mode, new thresholds and codes: stays up, no new announcement; fail=1 applies.
        let mut spec = HealthSpec::new(Health::Options);
        spec.fail = 1;
        m.update(Watched {
            id: 7,
            addr: addr(5077),
            health: spec,
        });
        ev.clear();
        m.poll(600 * MS, &mut ev);
        assert!(m.is_up(7), "kept its state");
        assert!(transitions(&ev).is_empty(), "{ev:?}");
        let p = probes(&ev);
        m.on_datagram(601 * MS, addr(5077), &answer(p[0].1, 503), &mut ev);
        assert!(!m.is_up(7), "one 503 with fail=1");

        // A new mode starts over from that mode's initial state.
        m.update(watched(8, 5078, Health::None));
        ev.clear();
        m.poll(700 * MS, &mut ev);
        assert_eq!(transitions(&ev), vec![(8, true, Reason::AlwaysUp)]);

        // Removed: no more probes; its datagrams are unknown.
        assert!(m.remove(7));
        assert!(!m.remove(7));
        ev.clear();
        m.poll(800 * MS, &mut ev);
        assert!(probes(&ev).is_empty());
        let unknown = m.stats().rejected_unknown;
        m.on_datagram(801 * MS, addr(5077), &answer(9, 200), &mut ev);
        assert_eq!(m.stats().rejected_unknown, unknown + 1);
        assert_eq!(m.ids(), vec![8]);
        // Adding an id already watched changes it.
        m.add(watched(8, 5079, Health::None));
        assert_eq!((m.ids(), m.addr(8)), (vec![8], Some(addr(5079))));
    }
}
