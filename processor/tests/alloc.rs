//! Steady-state SIP calls through the UAS, and MGCP calls through the gateway, do not allocate: a counting global allocator around
//! INVITE→200 (with a Timer G retransmission), ACK, BYE→200, with the lingering transaction,
//! Timer J and Timer L expiries firing on a fake clock, after a warm-up that lets every table
//! and buffer reach its high-water mark.
use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    io::Write,
    net::SocketAddr,
};

use processor::{
    outbox::Outbox,
    sip::{Uas, UasConfig},
};

struct Counting;

thread_local! {
    // Per thread, so tests running in parallel (and the harness) do not count each other.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

/// Counts an allocation made by this thread while counting is on.
fn count() {
    let on = COUNTING.try_with(Cell::get).unwrap_or(false);
    if on {
        let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
    }
}

/// Starts counting this thread's allocations from zero.
fn start_counting() {
    ALLOCS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
}

/// Stops counting; the allocations since [`start_counting`].
fn stop_counting() -> u64 {
    COUNTING.with(|c| c.set(false));
    ALLOCS.with(Cell::get)
}

// SAFETY: defers to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const MS: u64 = 1_000_000;

/// Writes one request into `buf` (reused; `write!` into a Vec with room does not allocate).
fn request(buf: &mut Vec<u8>, m: &str, branch: u64, call: u64, to_tag: &[u8], seq: u32, sdp: &str) {
    buf.clear();
    let ct = if sdp.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    let _ = write!(
        buf,
        "{m} sip:svc@10.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK{m}{branch}\r\nMax-Forwards: 70\r\nFrom: <sip:a@192.0.2.10>;tag=f{call}\r\nTo: <sip:svc@10.0.0.1>"
    );
    if !to_tag.is_empty() {
        buf.extend_from_slice(b";tag=");
        buf.extend_from_slice(to_tag);
    }
    let _ = write!(
        buf,
        "\r\nCall-ID: call{call}@192.0.2.10\r\nCSeq: {seq} {m}\r\nContact: <sip:a@192.0.2.10:5070>\r\n{ct}Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
}

/// The To-tag of the 200 in `out`, copied into `tag`.
fn tag_of_200(out: &Outbox, tag: &mut [u8; 64]) -> usize {
    for (_, b) in out.iter() {
        if !b.starts_with(b"SIP/2.0 200") {
            continue;
        }
        let Some(to) = b.windows(4).position(|w| w == b"\nTo:") else {
            continue;
        };
        let line = &b[to..];
        let end = line.iter().position(|&c| c == b'\r').unwrap_or(line.len());
        let line = &line[..end];
        if let Some(t) = line.windows(5).position(|w| w == b";tag=") {
            let v = &line[t + 5..];
            let n = v.len().min(64);
            tag[..n].copy_from_slice(&v[..n]);
            return n;
        }
    }
    0
}

#[test]
fn a_steady_state_call_does_not_allocate() {
    let contact: SocketAddr = "10.0.0.2:5071".parse().unwrap();
    let uac: SocketAddr = "192.0.2.10:5070".parse().unwrap();
    let mut uas = Uas::new(UasConfig::new(1, 4, contact));
    let mut out = Outbox::new();
    let mut buf = Vec::with_capacity(4096);
    let mut tag = [0u8; 64];
    let sdp = "v=0\r\no=a 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\n";
    let mut now = 1_000 * MS;
    let (warm, measured) = (3_000u64, 2_000u64);
    let mut retransmitted = 0;
    for i in 0..warm + measured {
        if i == warm {
            start_counting();
        }
        request(&mut buf, "INVITE", i, i, b"", 1, sdp);
        uas.on_message(now, uac, &buf, &mut out);
        let n = tag_of_200(&out, &mut tag);
        out.clear();
        // Timer G fires once (the ACK is late), then the call goes on.
        now += 501 * MS;
        uas.on_timer(now, &mut out);
        retransmitted += out.len();
        out.clear();
        request(&mut buf, "ACK", i, i, &tag[..n], 1, "");
        uas.on_message(now + MS, uac, &buf, &mut out);
        request(&mut buf, "BYE", i, i, &tag[..n], 2, "");
        uas.on_message(now + 2 * MS, uac, &buf, &mut out);
        out.clear();
        now += 20 * MS;
        uas.on_timer(now, &mut out);
        out.clear();
    }
    let allocs = stop_counting();
    let st = *uas.stats();
    assert_eq!(st.dialogs_ended, warm + measured, "every call completed");
    assert!(
        retransmitted as u64 >= warm + measured,
        "Timer G fired each call"
    );
    // 2.5 s of calls at 0.52 s each span far more than 64·T1: lingering transactions and
    // cached BYE answers have been expiring (Timer L / J) throughout the measured calls.
    assert!(now > 64 * 500 * MS * 30);
    println!("{allocs} allocations in {measured} steady-state calls");
    assert!(
        allocs <= 2 * measured,
        "{allocs} allocations in {measured} calls (more than 2 per call)"
    );
    assert_eq!(allocs, 0, "the protocol core allocates nothing per call");
}

/// Writes one MGCP command into `buf` (reused; no allocation once it has room).
fn mgcp(buf: &mut Vec<u8>, verb: &str, tid: u64, ep: &[u8], call: u64, conn: &[u8], rest: &str) {
    buf.clear();
    let _ = write!(buf, "{verb} {tid} ");
    buf.extend_from_slice(ep);
    let _ = write!(buf, " MGCP 1.0\r\nC: {call:x}A3C4\r\n");
    if !conn.is_empty() {
        buf.extend_from_slice(b"I: ");
        buf.extend_from_slice(conn);
        buf.extend_from_slice(b"\r\n");
    }
    buf.extend_from_slice(rest.as_bytes());
}

/// The value of parameter `name` (`I` or `Z`) in the first response in `out`, copied into `v`.
fn mgcp_param(out: &Outbox, name: u8, v: &mut [u8; 128]) -> usize {
    let Some((_, b)) = out.iter().next() else {
        return 0;
    };
    for line in b.split(|&c| c == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > 2 && line[0] == name && line[1] == b':' {
            let val = line[2..].trim_ascii();
            let n = val.len().min(128);
            v[..n].copy_from_slice(&val[..n]);
            return n;
        }
    }
    0
}

/// Steady-state MGCP calls through the gateway: CRCX (with an offer) → MDCX (new SDP and
/// mode) → DLCX by connection id, with T-HIST expiry of earlier commands running on a fake
/// clock throughout the measured calls.
#[test]
fn a_steady_state_mgcp_call_does_not_allocate() {
    use processor::mgcp::{Gateway, GatewayConfig};
    let mut cfg = GatewayConfig::new(1, 4, "10.0.0.2:2727".parse().unwrap());
    cfg.media_ports = (30000, 30999);
    let mut gw = Gateway::new(cfg);
    let ca: SocketAddr = "192.0.2.20:2427".parse().unwrap();
    let mut out = Outbox::new();
    let mut buf = Vec::with_capacity(4096);
    let (mut id, mut z) = ([0u8; 128], [0u8; 128]);
    let sdp = "\r\nv=0\r\no=- 1 1 IN IP4 192.0.2.30\r\ns=-\r\nc=IN IP4 192.0.2.30\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    let crcx_rest = format!("L: p:20, a:PCMU\r\nM: recvonly\r\nN: ca@192.0.2.20:2427\r\n{sdp}");
    let mdcx_rest = format!("M: sendrecv\r\n{sdp}");
    let mut now = 1_000 * MS;
    // 10 ms per call: 8,000 calls span 80 s, so T-HIST (30 s) expiries run through the
    // last 2,000.
    let (warm, measured) = (6_000u64, 2_000u64);
    for i in 0..warm + measured {
        if i == warm {
            start_counting();
        }
        let tid = 3 * i + 1;
        mgcp(
            &mut buf,
            "CRCX",
            tid,
            b"aaln/$@gw.example",
            i,
            b"",
            &crcx_rest,
        );
        gw.on_message(now, ca, &buf, &mut out);
        let n = mgcp_param(&out, b'I', &mut id);
        let m = mgcp_param(&out, b'Z', &mut z);
        out.clear();
        mgcp(&mut buf, "MDCX", tid + 1, &z[..m], i, &id[..n], &mdcx_rest);
        gw.on_message(now + MS, ca, &buf, &mut out);
        out.clear();
        mgcp(&mut buf, "DLCX", tid + 2, &z[..m], i, &id[..n], "");
        gw.on_message(now + 2 * MS, ca, &buf, &mut out);
        out.clear();
        now += 10 * MS;
        gw.on_timer(now, &mut out);
        out.clear();
    }
    let allocs = stop_counting();
    let st = *gw.stats();
    assert_eq!(st.connections_created, warm + measured, "every CRCX ran");
    assert_eq!(st.connections_deleted, warm + measured, "every DLCX ran");
    assert_eq!(st.errors, 0);
    assert_eq!(gw.active_connections(), 0);
    assert!(now > 1_000 * MS + 30_000 * MS + warm * 10 * MS / 2);
    println!("{allocs} allocations in {measured} steady-state MGCP calls");
    assert!(
        allocs <= 2 * measured,
        "{allocs} allocations in {measured} MGCP calls (more than 2 per call)"
    );
    assert_eq!(allocs, 0, "the MGCP gateway allocates nothing per call");
}
