//! Drives the router over N new INVITEs for instruction-level profiling:
//! `valgrind --tool=callgrind target/release/examples/profile_decision 20000`.
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
    let invites: Vec<Vec<u8>> = (0..n).map(invite).collect();
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
                    proto: PortProto::Sip,
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
