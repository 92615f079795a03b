//! The dispatcher's control side for processors on other hosts (claims 4, 7, 12, 15): a thread
//! that receives their signed load reports, or probes third-party processors (any SIP server:
//! SIPp, FreeSWITCH, ...) with OPTIONS, and keeps each one's [`LoadReport`] current. The
//! dispatcher thread only reads those atomics; it never waits on this thread.
use std::{
    collections::HashMap,
    io::ErrorKind,
    net::{SocketAddr, UdpSocket},
    sync::{
        atomic::{AtomicBool, Ordering::Relaxed},
        Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

use fabric::{monotonic_ns, LoadReport};
use processor::report::{Report, ReportError, ReportKey};
use tracing::{debug, info, warn};

/// How a remote processor proves it is alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Signed load reports (a `switchyard-processor`).
    Reports,
    /// Answers to SIP OPTIONS (a third-party SIP server); capacity comes from configuration.
    Options,
}

/// One processor on another host, as configured.
#[derive(Debug, Clone)]
pub struct RemoteSpec {
    /// Its SIP/MGCP address.
    pub addr: SocketAddr,
    /// Capacity in units (0: as it reports / unlimited).
    pub capacity: u32,
    /// Health signal.
    pub health: Health,
}

impl std::str::FromStr for RemoteSpec {
    type Err = String;

    /// `HOST:PORT[,capacity=N][,health=reports|options]`.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.split(',');
        let addr = parts
            .next()
            .unwrap_or_default()
            .parse()
            .map_err(|e| format!("{s}: address: {e}"))?;
        let mut spec = RemoteSpec {
            addr,
            capacity: 0,
            health: Health::Reports,
        };
        for p in parts {
            match p.split_once('=') {
                Some(("capacity", v)) => {
                    spec.capacity = v.parse().map_err(|e| format!("{s}: capacity: {e}"))?
                }
                Some(("health", "reports")) => spec.health = Health::Reports,
                Some(("health", "options")) => spec.health = Health::Options,
                _ => {
                    return Err(format!(
                        "{s}: unknown option {p:?} (capacity=N, health=reports|options)"
                    ))
                }
            }
        }
        Ok(spec)
    }
}

/// Counters of the report listener.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LanStats {
    /// Reports accepted.
    pub reports: u64,
    /// Reports whose tag did not verify (wrong key or tampered).
    pub rejected_auth: u64,
    /// Datagrams that are not a report of this version (length, magic, version).
    pub rejected_malformed: u64,
    /// Valid reports from an address that is not a configured processor, or with the wrong id.
    pub rejected_unknown: u64,
    /// Reports with a sequence number not above the last one (replays, reordering).
    pub rejected_stale: u64,
    /// OPTIONS probes sent.
    pub probes_sent: u64,
    /// Answers to probes.
    pub probe_answers: u64,
}

/// The running listener.
pub struct Lan {
    handle: JoinHandle<LanStats>,
    stop: Arc<AtomicBool>,
}

/// Member index and its load board, by the address reports come from.
type Board = HashMap<SocketAddr, (usize, Health, Arc<LoadReport>)>;

impl Lan {
    /// Starts the listener on `sock`. `members` are `(pool index, spec, load)` of the remote
    /// processors; `probe_every` paces OPTIONS probes.
    pub fn start(
        sock: UdpSocket,
        key: ReportKey,
        members: Vec<(usize, RemoteSpec, Arc<LoadReport>)>,
        probe_every: Duration,
    ) -> std::io::Result<Self> {
        sock.set_read_timeout(Some(Duration::from_millis(20)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let board: Board = members
            .into_iter()
            .map(|(k, spec, load)| (spec.addr, (k, spec.health, load)))
            .collect();
        info!(listen = ?sock.local_addr().ok(), processors = board.len(), "load report listener running");
        let handle = std::thread::Builder::new()
            .name("lan-reports".into())
            .spawn(move || run(&sock, &key, &board, probe_every, &stop2))?;
        Ok(Self { handle, stop })
    }

    /// Stops the listener; returns its counters.
    pub fn stop(self) -> LanStats {
        self.stop.store(true, Relaxed);
        self.handle.join().unwrap_or_default()
    }
}

fn run(
    sock: &UdpSocket,
    key: &ReportKey,
    board: &Board,
    probe_every: Duration,
    stop: &AtomicBool,
) -> LanStats {
    let mut st = LanStats::default();
    let mut last_seq: HashMap<SocketAddr, u64> = HashMap::new();
    let mut buf = [0u8; 2048];
    let mut next_probe = 0u64;
    let mut probe_n = 0u64;
    let local = sock.local_addr().ok();
    while !stop.load(Relaxed) {
        let now = monotonic_ns();
        if now >= next_probe {
            next_probe = now + probe_every.as_nanos() as u64;
            for (addr, (_, health, _)) in board {
                if *health == Health::Options {
                    probe_n += 1;
                    if sock
                        .send_to(&options_probe(*addr, local, probe_n), addr)
                        .is_ok()
                    {
                        st.probes_sent += 1;
                    }
                }
            }
        }
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => {
                warn!(error = %e, "report socket error");
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        let msg = &buf[..n];
        let Some((k, health, load)) = board.get(&from) else {
            st.rejected_unknown += 1;
            debug!(%from, "datagram from an unknown address on the report port");
            continue;
        };
        match health {
            Health::Options => {
                // Any SIP response from the probed address proves it alive.
                if msg.starts_with(b"SIP/2.0 ") {
                    st.probe_answers += 1;
                    load.heartbeat_ns.store(monotonic_ns(), Relaxed);
                    load.reports.fetch_add(1, Relaxed);
                }
            }
            Health::Reports => match Report::decode(msg, key) {
                Ok(r) if usize::from(r.id) != *k => st.rejected_unknown += 1,
                Ok(r) => {
                    let last = last_seq.entry(from).or_insert(0);
                    if r.seq <= *last {
                        st.rejected_stale += 1;
                        continue;
                    }
                    *last = r.seq;
                    load.active.store(r.active, Relaxed);
                    load.in_use_units.store(r.units_in_use, Relaxed);
                    load.released_units.store(r.released_units, Relaxed);
                    load.rejected_units.store(r.rejected_units, Relaxed);
                    load.capacity_units.store(r.capacity, Relaxed);
                    load.heartbeat_ns.store(monotonic_ns(), Relaxed);
                    load.reports.fetch_add(1, Relaxed);
                    st.reports += 1;
                }
                Err(ReportError::Auth) => {
                    st.rejected_auth += 1;
                    warn!(%from, "load report failed authentication (wrong --report-key-file?)");
                }
                Err(e) => {
                    st.rejected_malformed += 1;
                    debug!(%from, error = %e, "not a load report");
                }
            },
        }
    }
    st
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

    #[test]
    fn spec_parses() {
        let s: RemoteSpec = "198.18.0.11:5070,capacity=40,health=options"
            .parse()
            .unwrap();
        assert_eq!(
            (s.addr.port(), s.capacity, s.health),
            (5070, 40, Health::Options)
        );
        assert!("198.18.0.11:5070,foo=1".parse::<RemoteSpec>().is_err());
        assert!("nonsense".parse::<RemoteSpec>().is_err());
    }

    #[test]
    fn reports_update_the_board_and_bad_ones_are_counted() {
        let listener = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = listener.local_addr().unwrap();
        let proc_sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
        let key = ReportKey::new(b"k1");
        let load = LoadReport::new(0);
        let spec = RemoteSpec {
            addr: proc_sock.local_addr().unwrap(),
            capacity: 0,
            health: Health::Reports,
        };
        let lan = Lan::start(
            listener,
            key.clone(),
            vec![(3, spec, Arc::clone(&load))],
            Duration::from_secs(1),
        )
        .unwrap();
        let r = |seq, in_use| Report {
            id: 3,
            seq,
            units_in_use: in_use,
            capacity: 50,
            ..Report::default()
        };
        proc_sock.send_to(&r(1, 7).encode(&key), to).unwrap();
        proc_sock
            .send_to(&r(2, 9).encode(&ReportKey::new(b"wrong")), to)
            .unwrap();
        proc_sock.send_to(&r(1, 11).encode(&key), to).unwrap(); // replay
        proc_sock.send_to(b"garbage", to).unwrap();
        proc_sock
            .send_to(&Report { id: 4, ..r(5, 1) }.encode(&key), to)
            .unwrap();
        stranger.send_to(&r(9, 1).encode(&key), to).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let st = lan.stop();
        assert_eq!(
            (
                st.reports,
                st.rejected_auth,
                st.rejected_stale,
                st.rejected_malformed,
                st.rejected_unknown
            ),
            (1, 1, 1, 1, 2),
            "{st:?}"
        );
        assert_eq!(load.in_use_units.load(Relaxed), 7);
        assert_eq!(load.capacity_units.load(Relaxed), 50);
        assert!(load.heartbeat_ns.load(Relaxed) > 0);
    }
}
