//! The receive ceiling: loops that only count datagrams, to compare the dispatcher against.
//!
//! `udp`: one socket drained with `recvmmsg`. `xdp`: Switchyard's own XDP program steering the
//! port to AF_XDP sockets (one per rx queue) drained with `rx_batch`, no processing at all.
//! Both run on one thread (pinned with `--core`) for a fixed duration and report datagrams,
//! bytes and rates; the rate over the active period (first to last datagram) is the ceiling.
use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use serde::Serialize;

use udp_batch::{wait_readable, RecvBatch};

use crate::net::BATCH;

/// How the sink waits when nothing is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkIdle {
    /// Sleep in poll() (like the dispatcher's default).
    Poll,
    /// Busy-poll.
    Spin,
}

/// What a sink run counted.
#[derive(Debug, Default, Clone, Serialize)]
pub struct SinkResult {
    /// `udp` or `xdp`.
    pub backend: String,
    /// Datagrams (UDP) or frames (AF_XDP) received.
    pub datagrams: u64,
    /// Payload bytes (UDP) or frame bytes (AF_XDP).
    pub bytes: u64,
    /// The run's length (s).
    pub duration_s: f64,
    /// First to last datagram (s).
    pub active_s: f64,
    /// datagrams / duration.
    pub rate_pps: f64,
    /// datagrams / active period: the receive ceiling when the sender ran shorter.
    pub active_rate_pps: f64,
    /// Receive calls / ring batches that returned data.
    pub batches: u64,
    /// AF_XDP: the XDP program's counters and the sockets' ring counters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xdp: Option<serde_json::Value>,
}

struct Clock {
    start: Instant,
    first: Option<Duration>,
    last: Duration,
}

impl Clock {
    fn saw(&mut self) {
        let t = self.start.elapsed();
        self.first.get_or_insert(t);
        self.last = t;
    }

    fn finish(&self, r: &mut SinkResult) {
        let d = self.start.elapsed().as_secs_f64();
        r.duration_s = d;
        r.active_s = self
            .first
            .map(|f| (self.last - f).as_secs_f64())
            .unwrap_or(0.0);
        r.rate_pps = r.datagrams as f64 / d.max(1e-9);
        r.active_rate_pps = if r.active_s > 0.0 {
            r.datagrams as f64 / r.active_s
        } else {
            0.0
        };
    }
}

fn progress(start: Instant, next: &mut u64, n: u64, last_n: &mut u64) {
    let el = start.elapsed();
    if el.as_secs() >= *next {
        eprintln!(
            "[{:6.1}s] received {n:>10}  ({:>9.0}/s)",
            el.as_secs_f64(),
            (n - *last_n) as f64
        );
        *last_n = n;
        *next += 1;
    }
}

/// Counts datagrams arriving on `bind` for `duration`.
pub fn udp(bind: SocketAddr, duration: Duration, idle: SinkIdle) -> anyhow::Result<SinkResult> {
    let sock = udp_batch::bind(bind, 32 << 20).with_context(|| format!("binding {bind}"))?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&sock);
    let mut batch = RecvBatch::new(BATCH, 2048);
    let mut pfd = [libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }];
    let mut r = SinkResult {
        backend: "udp".into(),
        ..Default::default()
    };
    let mut clock = Clock {
        start: Instant::now(),
        first: None,
        last: Duration::ZERO,
    };
    eprintln!("sink udp: counting datagrams to {bind} for {duration:?}");
    let (mut next, mut last_n) = (1, 0);
    while clock.start.elapsed() < duration {
        // Err (an ICMP error reported on the socket) reads as nothing waiting.
        let n = batch.recv(&sock).unwrap_or(0);
        if n > 0 {
            clock.saw();
            r.batches += 1;
            r.datagrams += n as u64;
            r.bytes += batch.iter().map(|d| d.payload().len() as u64).sum::<u64>();
        } else if idle == SinkIdle::Poll {
            let _ = wait_readable(&mut pfd, 50_000_000);
        }
        progress(clock.start, &mut next, r.datagrams, &mut last_n);
    }
    clock.finish(&mut r);
    Ok(r)
}

/// Settings of the AF_XDP sink.
#[derive(Debug, Clone)]
pub struct XdpSinkConfig {
    /// Interface.
    pub iface: String,
    /// UDP destination port steered to AF_XDP.
    pub port: u16,
    /// Queues to serve (default: all).
    pub queues: Option<u32>,
    /// Attach mode.
    pub mode: xdp_io::loader::AttachMode,
    /// Zero-copy request.
    pub zero_copy: xdp_io::xsk::ZeroCopy,
    /// Idle behaviour.
    pub idle: SinkIdle,
    /// Run length.
    pub duration: Duration,
}

/// Counts frames the XDP program redirects to AF_XDP for `port` on `iface`.
pub fn xdp(cfg: &XdpSinkConfig) -> anyhow::Result<SinkResult> {
    use dispatcher_common::PortProto;
    use xdp_io::xsk::{XskConfig, XskQueue};
    if cfg.port == 0 {
        bail!("--port must be a UDP port (1-65535)");
    }
    let xdp_io::Steering {
        program: prog,
        mut queues,
        mode,
    } = xdp_io::Steering::open(&xdp_io::SteeringConfig {
        iface: &cfg.iface,
        ports: &[(cfg.port, PortProto::Sip)],
        queues: cfg.queues,
        xsk: XskConfig {
            zero_copy: cfg.zero_copy,
            ..XskConfig::default()
        },
        mode: cfg.mode,
        guard: Default::default(),
    })
    .context("setting up XDP steering (needs root/CAP_BPF, and a build with the eBPF toolchain)")?;
    let nq = queues.len();
    let zc = queues.iter().all(XskQueue::zero_copy);
    eprintln!(
        "sink xdp: {} queue(s) on {} ({:?} attach, {} mode), counting UDP to port {} for {:?}",
        nq,
        cfg.iface,
        mode,
        if zc { "zero-copy" } else { "copy" },
        cfg.port,
        cfg.duration
    );
    let mut pfds: Vec<libc::pollfd> = queues
        .iter()
        .map(|q| libc::pollfd {
            fd: q.fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let mut r = SinkResult {
        backend: "xdp".into(),
        ..Default::default()
    };
    let mut clock = Clock {
        start: Instant::now(),
        first: None,
        last: Duration::ZERO,
    };
    let (mut next, mut last_n) = (1, 0);
    let mut empty = 0u32;
    while clock.start.elapsed() < cfg.duration {
        let mut got = 0u32;
        for q in queues.iter_mut() {
            let n = q.rx_batch(64, |_, _| {});
            if n > 0 {
                r.batches += 1;
            }
            got += n;
        }
        if got > 0 {
            clock.saw();
            empty = 0;
        } else {
            empty = empty.saturating_add(1);
            for q in queues.iter_mut() {
                q.idle_maintenance();
            }
            if cfg.idle == SinkIdle::Poll && empty > 64 {
                let _ = wait_readable(&mut pfds, 50_000_000);
            }
        }
        let total: u64 = queues.iter().map(|q| q.stats().rx_frames).sum();
        progress(clock.start, &mut next, total, &mut last_n);
    }
    for q in queues.iter_mut() {
        q.refresh_kernel_stats();
    }
    let rings: xdp_io::xsk::XskStats = queues.iter().map(XskQueue::stats).sum();
    r.datagrams = rings.rx_frames;
    r.bytes = rings.rx_bytes;
    clock.finish(&mut r);
    let c = prog.counters().ok();
    r.xdp = Some(serde_json::json!({
        "iface": cfg.iface,
        "queues": nq,
        "attach": format!("{mode:?}").to_lowercase(),
        "zero_copy": zc,
        "redirected": c.map(|c| c.redirected),
        "passed": c.map(|c| c.passed),
        "malformed": c.map(|c| c.malformed),
        "no_socket": c.map(|c| c.no_socket),
        "dropped_not_allowed": c.map(|c| c.dropped_not_allowed),
        "dropped_rate": c.map(|c| c.dropped_rate),
        "fill_short": rings.fill_short,
        "kernel_rx_dropped": rings.kernel_rx_dropped,
    }));
    Ok(r)
}
