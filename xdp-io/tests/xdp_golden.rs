//! Golden-frame tests of the XDP program through `BPF_PROG_TEST_RUN` (Katran-style): the real
//! object, the kernel's verifier and helpers, one frame at a time, checking the action returned
//! and the counter each frame lands in.
//!
//! The frames and their expected verdicts are fixtures, `testdata/xdp/frames.txt`, generated
//! with scapy by `testdata/xdp/gen_frames.py`, independently of our own frame writer, so a bug
//! there cannot hide on both sides. `frame_fixtures.rs` runs the same frames through
//! user-space `frame::parse`.
//!
//! A real AF_XDP socket (bound to a testbed veth) sits in the XSKMAP so that well-known-port
//! frames really resolve to `XDP_REDIRECT`. Needs root: run through `cargo xtask test`.
mod common;

use common::fixtures::{self, Action, Fixture, ParseExpect};
use dispatcher_common::{Counter, PortProto};
use xdp_io::{
    loader::{XdpCounters, XdpProgram},
    xsk::{XskConfig, XskQueue},
};
use xtask::testbed::{in_netns, Testbed};

/// The ports the fixtures assume in the well-known-ports map (see `gen_frames.py`).
fn load_with_ports() -> XdpProgram {
    let mut prog = XdpProgram::load().expect("XDP program loads and passes the verifier");
    prog.add_port(5060, PortProto::Sip).unwrap();
    prog.add_port(2427, PortProto::Mgcp).unwrap();
    prog
}

fn bump(c: &mut XdpCounters, counter: Counter) {
    match counter {
        Counter::Redirected => c.redirected += 1,
        Counter::Passed => c.passed += 1,
        Counter::Malformed => c.malformed += 1,
        Counter::NoSocket => c.no_socket += 1,
    }
}

/// Runs `frame`, records a failure unless it returns `action` and exactly `counter` moves
/// (checked against `want`, the running total, to which `counter` is added).
fn run(
    prog: &XdpProgram,
    name: &str,
    frame: &[u8],
    action: Action,
    counter: Counter,
    want: &mut XdpCounters,
    failures: &mut Vec<String>,
) {
    let got = prog
        .test_run(frame)
        .unwrap_or_else(|e| panic!("{name}: test_run: {e}"));
    bump(want, counter);
    if got != action.code() {
        failures.push(format!(
            "{name}: action {got}, want {} ({action:?}, {counter:?})",
            action.code()
        ));
    }
    let have = prog.counters().unwrap();
    if have != *want {
        failures.push(format!("{name}: counters {have:?}, want {want:?}"));
        *want = have; // report each frame's own miscount only
    }
}

fn redirected_frame(all: &[Fixture]) -> &Fixture {
    all.iter()
        .find(|f| f.name == "ipv4 udp 5060")
        .expect("fixture `ipv4 udp 5060`")
}

#[test]
#[ignore = "needs root and the eBPF object: run `cargo xtask test`"]
fn golden_frames_through_prog_test_run() {
    common::require_root();
    let tb = Testbed::up(&common::tb_name("gf"), 1).expect("testbed");
    let iface = tb.disp_if.clone();
    let xsk = in_netns(&tb.disp_ns, move || {
        XskQueue::open(&iface, 0, XskConfig::default())
    })
    .expect("netns")
    .expect("AF_XDP socket on the testbed veth");
    let mut prog = load_with_ports();
    prog.register_socket(0, &xsk.fd()).unwrap();

    let all = fixtures::load();
    fixtures::assert_original_cases_covered(&all);
    let mut want = XdpCounters::default();
    let mut failures = Vec::new();
    for f in &all {
        run(
            &prog,
            &f.name,
            &f.frame,
            f.action,
            f.counter,
            &mut want,
            &mut failures,
        );
    }
    // Every prefix of a redirected frame that ends before its payload does (and still holds
    // the Ethernet header BPF_PROG_TEST_RUN requires) is malformed.
    for f in all.iter().filter(|f| f.action == Action::Redirect) {
        let ParseExpect::Ok(p) = &f.parse else {
            panic!("{}: redirected but not parseable", f.name);
        };
        for cut in 14..p.payload_offset + p.payload_len {
            let name = format!("{} cut at {cut}", f.name);
            let frame = &f.frame[..cut];
            run(
                &prog,
                &name,
                frame,
                Action::Pass,
                Counter::Malformed,
                &mut want,
                &mut failures,
            );
        }
    }
    assert!(
        failures.is_empty(),
        "golden frames failed:\n{}",
        failures.join("\n")
    );
    assert_eq!(
        prog.counters().unwrap(),
        want,
        "every frame lands in exactly its counter"
    );
}

#[test]
#[ignore = "needs root and the eBPF object: run `cargo xtask test`"]
fn well_known_port_without_socket_is_passed_and_counted() {
    common::require_root();
    let prog = load_with_ports();
    let all = fixtures::load();
    let f = redirected_frame(&all);
    assert_eq!(f.action, Action::Redirect);
    assert_eq!(prog.test_run(&f.frame).unwrap(), Action::Pass.code());
    let c = prog.counters().unwrap();
    assert_eq!((c.no_socket, c.redirected), (1, 0));
}
