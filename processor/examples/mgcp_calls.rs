//! Drives `N` MGCP calls (CRCX with an offer → MDCX → DLCX) through one [`Gateway`]
//! in-process with a fake clock (10 ms per call by default, timers run), for instruction
//! counts under callgrind: `valgrind --tool=callgrind target/release/examples/mgcp_calls
//! 12000` minus the same with 2000, divided by 10000, is the cost of one steady-state call.
//! A second argument `sized` passes the session size as the dispatcher would
//! (`Gateway::on_message_sized`); a third, the clock step per call in µs, sets how soon
//! T-HIST (30 s) expiries start (the default 10,000 µs: after 3,000 calls).
use std::{io::Write, net::SocketAddr};

use processor::{
    mgcp::{Gateway, GatewayConfig},
    outbox::Outbox,
};

/// The value of parameter `name` in the first response in `out`, copied into `v`.
fn param(out: &Outbox, name: u8, v: &mut Vec<u8>) {
    v.clear();
    let Some((_, b)) = out.iter().next() else {
        return;
    };
    for line in b.split(|&c| c == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > 2 && line[0] == name && line[1] == b':' {
            v.extend_from_slice(line[2..].trim_ascii());
            return;
        }
    }
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let sized = std::env::args().nth(2).is_some_and(|a| a == "sized");
    let step_ns: u64 = std::env::args()
        .nth(3)
        .and_then(|a| a.parse::<u64>().ok())
        .unwrap_or(10_000)
        * 1000;
    let mut cfg = GatewayConfig::new(1, 4, "10.0.0.2:2727".parse().expect("literal address"));
    cfg.media_ports = (30000, 39999);
    let mut gw = Gateway::new(cfg);
    let ca: SocketAddr = "192.0.2.20:2427".parse().expect("literal address");
    let mut out = Outbox::new();
    let mut buf = Vec::with_capacity(2048);
    let (mut id, mut z) = (Vec::with_capacity(64), Vec::with_capacity(64));
    let sdp = "\r\nv=0\r\no=- 1 1 IN IP4 192.0.2.30\r\ns=-\r\nc=IN IP4 192.0.2.30\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    let mut now = 1_000_000_000u64;
    for i in 0..n {
        let tid = 3 * i + 1;
        buf.clear();
        let _ = write!(
            buf,
            "CRCX {tid} aaln/$@gw.example MGCP 1.0\r\nC: {i:x}A3C4\r\nL: p:20, a:PCMU\r\nM: recvonly\r\nN: ca@192.0.2.20:2427\r\n{sdp}"
        );
        gw.on_message_sized(now, ca, &buf, sized.then_some(1), &mut out);
        param(&out, b'I', &mut id);
        param(&out, b'Z', &mut z);
        out.clear();
        for (verb, t, rest) in [("MDCX", tid + 1, "M: sendrecv\r\n"), ("DLCX", tid + 2, "")] {
            buf.clear();
            let _ = write!(buf, "{verb} {t} ");
            buf.extend_from_slice(&z);
            let _ = write!(buf, " MGCP 1.0\r\nC: {i:x}A3C4\r\nI: ");
            buf.extend_from_slice(&id);
            buf.extend_from_slice(b"\r\n");
            buf.extend_from_slice(rest.as_bytes());
            if verb == "MDCX" {
                buf.extend_from_slice(sdp.as_bytes());
            }
            now += 1_000_000;
            gw.on_message(now, ca, &buf, &mut out);
            out.clear();
        }
        now += step_ns.saturating_sub(2_000_000).max(1);
        gw.on_timer(now, &mut out);
        out.clear();
    }
    let s = gw.stats();
    assert_eq!(s.connections_deleted, n, "every call completed");
    assert_eq!(s.errors, 0, "no command failed");
    println!("{n} calls, {} active", gw.active_connections());
}
