//! Drives the router over N new INVITEs for instruction-level profiling:
//! `valgrind --tool=callgrind target/release/examples/profile_decision 20000`.
use std::{hint::black_box, net::SocketAddr, sync::Arc};

use dispatcher_common::PortProto;
use dispatcher_user::route::{select::Policy, Inbound, Member, Router, RouterConfig, REPLY_BYTES};
use processor::fabric::{channel, LoadReport};

fn invite(i: usize) -> Vec<u8> {
    let sdp = "v=0\r\no=- 2890844526 2890844526 IN IP4 198.18.0.2\r\ns=-\r\nc=IN IP4 198.18.0.2\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0 8 97\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:97 iLBC/8000\r\na=ptime:20\r\n";
    format!(
        "INVITE sip:service@198.18.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.18.0.2:5060;branch=z9hG4bK-{i:08}-776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Service <sip:service@198.18.0.1:5060>\r\n\
From: Application <sip:app@198.18.0.2:5060>;tag=1928301774-{i}\r\n\
Call-ID: a84b4c76e66710-{i:08}@198.18.0.2\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:app@198.18.0.2:5060>\r\n\
User-Agent: switchyard-bench\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n\
Content-Type: application/sdp\r\n\
Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
    .into_bytes()
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let invites: Vec<Vec<u8>> = (0..n).map(invite).collect();
    let mut members = vec![];
    let mut consumers = vec![];
    for k in 0..4u16 {
        let (p, c) = channel(n + 16).unwrap();
        let load = LoadReport::new(0);
        load.heartbeat_ns
            .store(u64::MAX / 2, std::sync::atomic::Ordering::Relaxed);
        members.push(Member::new(5070 + k, 0, p, Arc::clone(&load)));
        consumers.push(c);
    }
    let cfg = RouterConfig {
        policy: Policy::LeastLoaded,
        affinity_capacity: 1 << 20,
        ..RouterConfig::default()
    };
    let mut r = Router::new(cfg, members, 0);
    let src: SocketAddr = "198.18.0.2:5060".parse().unwrap();
    let dst: SocketAddr = "198.18.0.1:5060".parse().unwrap();
    let mut reply = vec![0u8; REPLY_BYTES];
    for inv in &invites {
        black_box(r.handle(
            0,
            &Inbound {
                proto: PortProto::Sip,
                src,
                dst,
                payload: inv,
            },
            &mut reply,
        ));
    }
    r.flush();
    black_box(consumers.len());
}
