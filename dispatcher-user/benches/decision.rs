//! Micro-benchmarks of the dispatcher's decision path and of the fabric queue.
//!
//! `decision/new_invite`: scan + classify + select (least-loaded, 4 processors) + affinity
//! insert + enqueue into a real fabric queue, per INVITE (a typical ~950-byte INVITE with SDP,
//! each with its own Call-ID/branch so every one is a new dialog). `decision/in_dialog_bye`:
//! the stateless To-tag route. `fabric/push_commit_drain`: one message through the SPSC queue.
//! Consumers are drained outside the timed section. Run: `cargo bench -p dispatcher-user`.
use std::{hint::black_box, net::SocketAddr, sync::Arc, time::Duration};

use criterion::{criterion_group, criterion_main, Criterion};
use dispatcher_common::PortProto;
use dispatcher_user::{
    links::{Dispatch, LinkedMember, Links},
    route::{select::Policy, Inbound, Router, RouterConfig},
};
use fabric::{channel, Consumer, LoadReport};

#[path = "support/invite.rs"]
mod invite_msg;
use invite_msg::invite;

const N: usize = 4096;

fn router(n: usize) -> (Dispatch, Vec<Consumer>) {
    let mut members = vec![];
    let mut consumers = vec![];
    for k in 0..n {
        let (p, c) = channel(N * 2).unwrap();
        let load = LoadReport::new(0);
        load.heartbeat_ns
            .store(u64::MAX / 2, std::sync::atomic::Ordering::Relaxed);
        members.push(LinkedMember::local(
            5070 + k as u16,
            0,
            p,
            Arc::clone(&load),
        ));
        consumers.push(c);
    }
    let cfg = RouterConfig {
        policy: Policy::LeastLoaded,
        affinity_capacity: 1 << 20,
        ..RouterConfig::default()
    };
    let links = Links::new(members.into_iter().map(Some).collect(), None, &cfg, 0);
    (
        Dispatch::new(
            Router::new(
                cfg,
                links.specs_by_id().into_iter().map(|(_, s)| s).collect(),
            ),
            links,
        ),
        consumers,
    )
}

fn bench(c: &mut Criterion) {
    let src: SocketAddr = "198.18.0.2:5060".parse().unwrap();
    let dst: SocketAddr = "198.18.0.1:5060".parse().unwrap();
    let invites: Vec<Vec<u8>> = (0..N).map(invite).collect();
    let mut g = c.benchmark_group("decision");
    g.measurement_time(Duration::from_secs(3));
    g.bench_function("new_invite", |b| {
        b.iter_custom(|iters| {
            let (mut r, mut consumers) = router(4);
            let mut total = Duration::ZERO;
            let mut done = 0u64;
            let mut round = 0u64;
            while done < iters {
                let batch = (iters - done).min(N as u64) as usize;
                // Distinct clocks per round keep every INVITE a new dialog (affinity misses).
                let now = round * 100_000_000_000;
                let t = std::time::Instant::now();
                r.begin_batch(now);
                for inv in &invites[..batch] {
                    let a = r.handle(
                        now,
                        &Inbound {
                            proto: PortProto::Sip,
                            src,
                            dst,
                            payload: inv,
                        },
                    );
                    black_box(a);
                }
                r.flush();
                total += t.elapsed();
                for c in &mut consumers {
                    c.drain(usize::MAX, |s| {
                        black_box(s.bytes().len());
                    });
                }
                done += batch as u64;
                round += 1;
            }
            total
        })
    });
    let bye = b"BYE sip:app@198.18.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.0.2:5060;branch=z9hG4bK-bye1\r\nMax-Forwards: 70\r\nFrom: <sip:app@198.18.0.2>;tag=1928301774\r\nTo: <sip:service@198.18.0.1>;tag=0002000000000000feed2c1a8b7e\r\nCall-ID: a84b4c76e66710@198.18.0.2\r\nCSeq: 314160 BYE\r\nContent-Length: 0\r\n\r\n";
    let mut tag = [0u8; wire::tag::TAG_LEN];
    wire::tag::encode(&wire::tag::TagKey::UNKEYED, 2, 0xfeed, &mut tag).unwrap();
    let bye = String::from_utf8_lossy(bye)
        .replace(
            "0002000000000000feed2c1a8b7e",
            std::str::from_utf8(&tag).unwrap(),
        )
        .into_bytes();
    g.bench_function("in_dialog_bye", |b| {
        b.iter_custom(|iters| {
            let (mut r, mut consumers) = router(4);
            let mut total = Duration::ZERO;
            let mut done = 0u64;
            while done < iters {
                let batch = (iters - done).min(N as u64);
                let t = std::time::Instant::now();
                r.begin_batch(0);
                for _ in 0..batch {
                    let a = r.handle(
                        0,
                        &Inbound {
                            proto: PortProto::Sip,
                            src,
                            dst,
                            payload: &bye,
                        },
                    );
                    debug_assert!(a.is_none(), "forwarded, not answered");
                    black_box(a);
                }
                r.flush();
                total += t.elapsed();
                for c in &mut consumers {
                    c.drain(usize::MAX, |s| {
                        black_box(s.bytes().len());
                    });
                }
                done += batch;
            }
            total
        })
    });
    g.finish();

    let mut f = c.benchmark_group("fabric");
    let (mut p, mut cons) = channel(1024).unwrap();
    let msg = invite(0);
    f.bench_function("push_commit_drain", |b| {
        b.iter(|| {
            assert!(p.push_with(|s| s.fill(&msg)));
            p.commit();
            cons.drain(1, |s| {
                black_box(s.bytes().len());
            })
        })
    });
    f.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
