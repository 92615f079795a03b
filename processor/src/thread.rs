//! The processor thread: the thin I/O shell around [`Uas`] and [`Gateway`].
//!
//! One thread per processor owns its fabric [`Consumer`] and its UDP socket. Each round it
//! drains a batch from the queue, drains the socket until `WouldBlock`, runs due timers, sends
//! the outbox in order (so a transaction's 100/180/200 leave in sequence from one thread, as
//! SIPp requires) and stamps the load heartbeat. With nothing to do it parks on the queue and
//! `poll()`s the socket and the queue's eventfd until the next timer (at most 100 ms, so `stop`
//! is noticed promptly).
use std::{
    io::ErrorKind,
    net::UdpSocket,
    os::fd::AsRawFd,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use tracing::{debug, warn};

use fabric::{Consumer, LoadReport, Proto};

use crate::{
    load::LoadAccount,
    mgcp::{Gateway, GatewayConfig, GatewayStats},
    outbox::Outbox,
    sip::{Uas, UasConfig, UasStats},
};

/// Everything one processor thread needs besides its queue, socket and load board.
#[derive(Debug, Clone)]
pub struct ProcessorConfig {
    /// SIP UAS settings (its `contact` should be the socket's address).
    pub sip: UasConfig,
    /// MGCP gateway settings (its `addr` should be the socket's address).
    pub mgcp: GatewayConfig,
    /// Most queue messages or datagrams handled per round before timers and sends run.
    pub batch: usize,
    /// Longest idle sleep, bounding how late `stop` is noticed.
    pub max_idle: Duration,
    /// CPU core to pin the thread to (`None`: let the scheduler place it).
    pub core: Option<usize>,
    /// Dispatchers that relay MGCP commands over the LAN: a command from one of these
    /// addresses carrying `X-SY-Src: ip:port` is answered at that address (the call agent's),
    /// since MGCP answers go to the command's source and the dispatcher is not on that path.
    /// Only these addresses are trusted with the parameter.
    pub relays: Vec<std::net::IpAddr>,
    /// Where the thread publishes a copy of its counters every [`LIVE_EVERY`] while it runs
    /// (for `/metrics`); `None`: the counters are only returned when it stops.
    pub live: Option<Arc<LiveStats>>,
}

/// How often a running processor thread copies its counters into [`ProcessorConfig::live`].
pub const LIVE_EVERY: Duration = Duration::from_millis(100);

/// The processor thread's counters while it runs, for readers on other threads (the metrics
/// server).
///
/// Why a published copy: the thread keeps its counters as plain integers (no atomics per
/// message). Every [`LIVE_EVERY`] it copies them here with a `try_lock`, skipping the round
/// when a reader holds the lock, so it never waits on a reader.
#[derive(Debug, Default)]
pub struct LiveStats(Mutex<ProcessorStats>);

impl LiveStats {
    /// A cell holding zeros until the first publish.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Stores `s` unless a reader holds the cell right now; returns whether it was stored.
    pub fn try_publish(&self, s: ProcessorStats) -> bool {
        match self.0.try_lock() {
            Ok(mut g) => {
                *g = s;
                true
            }
            Err(_) => false,
        }
    }

    /// Stores `s`, waiting for a reader to let go (for the final counters, off the hot path).
    pub fn store(&self, s: ProcessorStats) {
        match self.0.lock() {
            Ok(mut g) => *g = s,
            Err(p) => *p.into_inner() = s,
        }
    }

    /// The last published counters.
    pub fn get(&self) -> ProcessorStats {
        match self.0.lock() {
            Ok(g) => *g,
            Err(p) => *p.into_inner(),
        }
    }
}

// The relay rules (which datagrams are MGCP, whose `X-SY-Src` is trusted) are `wire::mgcp`'s.
use wire::mgcp::{looks_like_mgcp, relayed_source};

impl ProcessorConfig {
    /// Defaults for processor `id` of `max_processors` owning `addr`.
    pub fn new(id: u16, max_processors: u16, addr: std::net::SocketAddr) -> Self {
        Self {
            sip: UasConfig::new(id, max_processors, addr),
            mgcp: GatewayConfig::new(id, max_processors, addr),
            batch: 64,
            max_idle: Duration::from_millis(100),
            core: None,
            relays: Vec::new(),
            live: None,
        }
    }
}

/// What a processor thread did, returned when it stops.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcessorStats {
    /// SIP UAS counters.
    pub sip: UasStats,
    /// MGCP gateway counters.
    pub mgcp: GatewayStats,
    /// Messages taken from the fabric queue.
    pub queue_messages: u64,
    /// Datagrams received on the processor's own socket.
    pub socket_messages: u64,
    /// Datagrams sent.
    pub sent: u64,
    /// Sends that failed (socket buffer full, unreachable, ...).
    pub send_errors: u64,
    /// Receive errors other than `WouldBlock`.
    pub recv_errors: u64,
    /// Times the thread went to sleep.
    pub sleeps: u64,
}

/// What `switchyard-processor --stats-json` writes at exit: the thread's counters and the
/// load reports sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StandaloneReport {
    /// Load reports sent.
    pub reports: u64,
    /// Load reports the kernel refused.
    pub report_send_errors: u64,
    /// The processor thread's counters.
    #[serde(flatten)]
    pub stats: ProcessorStats,
}

/// Starts the processor thread; see the module docs. Panics only if the OS cannot create a
/// thread (like [`std::thread::spawn`]); use [`try_spawn`] to handle that.
pub fn spawn(
    cfg: ProcessorConfig,
    consumer: Consumer,
    load: Arc<LoadReport>,
    socket: UdpSocket,
    stop: Arc<AtomicBool>,
) -> JoinHandle<ProcessorStats> {
    match try_spawn(cfg, consumer, load, socket, stop) {
        Ok(h) => h,
        Err(e) => panic!("cannot spawn processor thread: {e}"),
    }
}

/// Like [`spawn`], returning the error when the thread cannot be created.
pub fn try_spawn(
    cfg: ProcessorConfig,
    consumer: Consumer,
    load: Arc<LoadReport>,
    socket: UdpSocket,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<ProcessorStats>> {
    socket.set_nonblocking(true)?;
    std::thread::Builder::new()
        .name(format!("processor-{}", cfg.sip.id))
        .spawn(move || run(cfg, consumer, load, socket, &stop))
}

fn run(
    cfg: ProcessorConfig,
    mut consumer: Consumer,
    load: Arc<LoadReport>,
    socket: UdpSocket,
    stop: &AtomicBool,
) -> ProcessorStats {
    if let Some(id) = cfg.core {
        if !core_affinity::set_for_current(core_affinity::CoreId { id }) {
            tracing::warn!(
                core = id,
                "could not pin processor thread; running unpinned"
            );
        }
    }
    let start = Instant::now();
    let clock = || u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let batch = cfg.batch.max(1);
    let max_idle_ms = i32::try_from(cfg.max_idle.as_millis())
        .unwrap_or(100)
        .max(1);
    let relays = cfg.relays.clone();
    let live = cfg.live.clone();
    let live_every = u64::try_from(LIVE_EVERY.as_nanos()).unwrap_or(u64::MAX);
    let mut live_at = 0u64;
    let account = LoadAccount::new(Arc::clone(&load));
    let mut uas = Uas::with_load(cfg.sip, Arc::clone(&load));
    let mut gw = Gateway::with_load(cfg.mgcp, load);
    let mut out = Outbox::new();
    let mut rx = vec![0u8; 65536];
    let mut st = ProcessorStats::default();
    debug!(addr = ?socket.local_addr().ok(), "processor thread started");
    while !stop.load(Ordering::Relaxed) {
        let now = clock();
        let mut work = consumer.drain(batch, |slot| match slot.proto {
            Proto::Sip => uas.on_message(now, slot.src, slot.bytes(), &mut out),
            Proto::Mgcp => gw.on_message(now, slot.src, slot.bytes(), &mut out),
        });
        st.queue_messages += work as u64;
        for _ in 0..batch {
            match socket.recv_from(&mut rx) {
                Ok((n, from)) => {
                    let msg = &rx[..n.min(rx.len())];
                    if looks_like_mgcp(msg) {
                        let src = relayed_source(msg, from, &relays);
                        gw.on_message(now, src, msg, &mut out);
                    } else {
                        uas.on_message(now, from, msg, &mut out);
                    }
                    st.socket_messages += 1;
                    work += 1;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    // ICMP errors from earlier sends surface here (ECONNREFUSED): not fatal.
                    st.recv_errors += 1;
                    debug!(error = %e, "recv_from failed");
                    break;
                }
            }
        }
        let now = clock();
        if let Some(cell) = &live {
            if now >= live_at {
                st.sip = *uas.stats();
                st.mgcp = *gw.stats();
                if cell.try_publish(st) {
                    live_at = now + live_every;
                }
            }
        }
        uas.on_timer(now, &mut out);
        gw.on_timer(now, &mut out);
        let sent_any = !out.is_empty();
        for (i, (dst, bytes)) in out.iter().enumerate() {
            // A timer storm (thousands of unacknowledged 2xx retransmitting at once) can make
            // one round long: keep the heartbeat fresh so busy is never mistaken for dead.
            if i % 256 == 255 {
                account.heartbeat(fabric::monotonic_ns());
            }
            match socket.send_to(bytes, dst) {
                Ok(_) => st.sent += 1,
                Err(e) => {
                    st.send_errors += 1;
                    debug!(error = %e, %dst, "send_to failed");
                }
            }
        }
        out.clear();
        account.pending_invites(uas.pending_invites());
        account.heartbeat(fabric::monotonic_ns());
        if work > 0 || sent_any {
            continue;
        }
        let deadline = match (uas.next_deadline(), gw.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let timeout_ms = match deadline {
            Some(d) if d <= now => continue,
            Some(d) => i32::try_from((d - now).div_ceil(1_000_000))
                .unwrap_or(i32::MAX)
                .min(max_idle_ms),
            None => max_idle_ms,
        };
        if !consumer.park() {
            continue;
        }
        st.sleeps += 1;
        let mut fds = [
            libc::pollfd {
                fd: socket.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: consumer.wake_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: two valid pollfd structs on live descriptors owned by this thread.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != ErrorKind::Interrupted {
                warn!(error = %e, "poll failed");
            }
        }
        consumer.unpark();
    }
    st.sip = *uas.stats();
    st.mgcp = *gw.stats();
    if let Some(cell) = &live {
        // The final counters must be there (a scrape at exit equals `--stats-json`): wait.
        cell.store(st);
    }
    debug!(?st, "processor thread stopped");
    st
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn recv_text(s: &UdpSocket) -> String {
        let mut b = [0u8; 8192];
        let (n, _) = s.recv_from(&mut b).expect("response within the timeout");
        String::from_utf8_lossy(&b[..n]).into_owned()
    }

    #[test]
    fn thread_answers_queue_invite_and_direct_bye() {
        let proc_sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let paddr = proc_sock.local_addr().unwrap();
        let uac = UdpSocket::bind("127.0.0.1:0").unwrap();
        uac.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let uaddr = uac.local_addr().unwrap();
        let (mut producer, consumer) = fabric::channel(16).unwrap();
        let load = LoadReport::new(0);
        let stop = Arc::new(AtomicBool::new(false));
        let mut cfg = ProcessorConfig::new(2, 4, paddr);
        cfg.sip.send_180 = true;
        let h = spawn(
            cfg,
            consumer,
            Arc::clone(&load),
            proc_sock,
            Arc::clone(&stop),
        );

        let via = format!("SIP/2.0/UDP {uaddr};branch=z9hG4bK");
        let common = |m: &str, b: &str, tag: &str, seq: u32| {
            format!("{m} sip:svc@{paddr} SIP/2.0\r\nVia: {via}{b}\r\nMax-Forwards: 70\r\nFrom: <sip:u@x>;tag=f1\r\nTo: <sip:svc@x>{tag}\r\nCall-ID: thread-1\r\nCSeq: {seq} {m}\r\nContent-Length: 0\r\n\r\n")
        };
        let invite = common("INVITE", "inv1", "", 1);
        std::thread::sleep(Duration::from_millis(20)); // let it park first: exercises the wake-up
        let dispatcher_addr: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        assert!(producer.push_with(|s| {
            s.proto = Proto::Sip;
            s.src = uaddr;
            s.dst = dispatcher_addr;
            s.fill(invite.as_bytes())
        }));
        producer.commit();
        let r100 = recv_text(&uac);
        let r180 = recv_text(&uac);
        let r200 = recv_text(&uac);
        assert!(r100.starts_with("SIP/2.0 100 "), "{r100}");
        assert!(r180.starts_with("SIP/2.0 180 "), "{r180}");
        assert!(r200.starts_with("SIP/2.0 200 "), "{r200}");
        assert!(r200.contains(&format!("Contact: <sip:proc@{paddr}>")));
        let tag = r200
            .split("\r\n")
            .find(|l| l.starts_with("To:"))
            .and_then(|l| l.split(";tag=").nth(1))
            .unwrap()
            .to_string();
        assert_eq!(
            wire::tag::decode(&wire::tag::TagKeys::UNKEYED, tag.as_bytes(), 4),
            Ok(2)
        );
        assert_eq!(load.active.load(Ordering::Relaxed), 1);
        // The unacknowledged INVITE is published as pending (with the round's heartbeat).
        let until = Instant::now() + Duration::from_secs(5);
        while load.pending_invites.load(Ordering::Relaxed) != 1 {
            assert!(Instant::now() < until, "pending INVITE never published");
            std::thread::sleep(Duration::from_millis(1));
        }

        // ACK and BYE go straight to the processor's socket (the 200's Contact).
        let tagp = format!(";tag={tag}");
        uac.send_to(common("ACK", "ack1", &tagp, 1).as_bytes(), paddr)
            .unwrap();
        uac.send_to(common("BYE", "bye1", &tagp, 2).as_bytes(), paddr)
            .unwrap();
        let bye_ok = recv_text(&uac);
        assert!(
            bye_ok.starts_with("SIP/2.0 200 ") && bye_ok.contains("CSeq: 2 BYE"),
            "{bye_ok}"
        );

        // MGCP straight to the socket is recognised as MGCP.
        uac.send_to(b"RQNT 77 aaln/1@gw MGCP 1.0\r\nX: 1\r\n", paddr)
            .unwrap();
        assert!(recv_text(&uac).starts_with("200 77"));

        stop.store(true, Ordering::Relaxed);
        let st = h.join().unwrap();
        assert_eq!(st.queue_messages, 1);
        assert_eq!(st.socket_messages, 3);
        assert_eq!(st.sip.dialogs_confirmed, 1);
        assert_eq!(st.sip.dialogs_ended, 1);
        assert_eq!(st.mgcp.commands, 1);
        assert_eq!(load.active.load(Ordering::Relaxed), 0);
        assert_eq!(load.released_units.load(Ordering::Relaxed), 1);
        assert_eq!(load.pending_invites.load(Ordering::Relaxed), 0, "ACKed");
        assert_eq!(st.sip.pending_invites_max, 1);
        assert!(load.heartbeat_ns.load(Ordering::Relaxed) > 0);
    }
}
