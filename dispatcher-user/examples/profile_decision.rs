//! Drives the router over N new INVITEs (or MGCP CRCXs with a second argument `mgcp`) for
//! instruction-level profiling; the cost per decision is the difference of two runs:
//! `valgrind --tool=callgrind target/release/examples/profile_decision 20000 [mgcp]`.
use std::{hint::black_box, net::SocketAddr, sync::Arc};

use dispatcher_common::PortProto;
use dispatcher_user::{
    links::{Dispatch, LinkedMember, Links},
    route::{select::Policy, Inbound, Router, RouterConfig},
};
use fabric::{channel, LoadReport};

#[path = "../benches/support/invite.rs"]
mod invite_msg;
use invite_msg::invite;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let mgcp = std::env::args().nth(2).is_some_and(|a| a == "mgcp");
    let invites: Vec<Vec<u8>> = if mgcp {
        (0..n).map(crcx).collect()
    } else {
        (0..n).map(invite).collect()
    };
    let mut members = vec![];
    let mut consumers = vec![];
    for k in 0..4u16 {
        let (p, c) = channel(n + 16).unwrap();
        let load = LoadReport::new(0);
        load.heartbeat_ns
            .store(u64::MAX / 2, std::sync::atomic::Ordering::Relaxed);
        members.push(LinkedMember::local(5070 + k, 0, p, Arc::clone(&load)));
        consumers.push(c);
    }
    let cfg = RouterConfig {
        policy: Policy::LeastLoaded,
        affinity_capacity: 1 << 20,
        ..RouterConfig::default()
    };
    let links = Links::new(members.into_iter().map(Some).collect(), None, &cfg, 0);
    let mut r = Dispatch::new(
        Router::new(
            cfg,
            links.specs_by_id().into_iter().map(|(_, s)| s).collect(),
        ),
        links,
    );
    r.begin_batch(0);
    let src: SocketAddr = "198.18.0.2:5060".parse().unwrap();
    let dst: SocketAddr = "198.18.0.1:5060".parse().unwrap();
    for inv in &invites {
        black_box(
            r.handle(
                0,
                &Inbound {
                    proto: if mgcp {
                        PortProto::Mgcp
                    } else {
                        PortProto::Sip
                    },
                    src,
                    dst,
                    payload: inv,
                },
            )
            .is_none(),
        );
    }
    r.flush();
    black_box(consumers.len());
}

/// CRCX number `i`: a new connection on a wildcard endpoint, with SDP, like the bench's.
fn crcx(i: usize) -> Vec<u8> {
    format!(
        "CRCX {} ds/ds1-1/$@gw.example MGCP 1.0\r\nC: call-{i:08}\r\nL: p:20, a:PCMU\r\nM: sendrecv\r\n\r\nv=0\r\no=- {i} 1 IN IP4 198.18.0.2\r\ns=-\r\nc=IN IP4 198.18.0.2\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0\r\n",
        1000 + i
    )
    .into_bytes()
}
