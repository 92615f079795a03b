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
//! frames really resolve to `XDP_REDIRECT`. Each case runs under the source-guard maps its
//! `config` names (set through the loader's map updates, the program stays loaded), with every
//! token bucket fresh. Needs root: run through `cargo xtask test`.
mod common;

use common::fixtures::{self, Action, Fixture, GuardFixture, ParseExpect};
use dispatcher_common::{Counter, PortProto};
use xdp_io::{
    loader::{SourceGuard, XdpCounters, XdpProgram},
    prefix::Prefix,
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
        Counter::DroppedNotAllowed => c.dropped_not_allowed += 1,
        Counter::DroppedRate => c.dropped_rate += 1,
    }
}

/// Sets the maps to `g` (and forgets every bucket): what a case runs under.
fn configure(prog: &mut XdpProgram, g: &GuardFixture) {
    let prefixes = |l: &[String]| -> Vec<Prefix> {
        l.iter()
            .map(|p| {
                p.parse()
                    .unwrap_or_else(|e| panic!("fixture prefix {p:?}: {e}"))
            })
            .collect()
    };
    let (rate, burst) = g.rate.unwrap_or((0, 0));
    prog.set_guard(&SourceGuard {
        allow: prefixes(&g.allow),
        rate,
        burst,
        exempt: prefixes(&g.exempt),
    })
    .expect("setting the guard maps");
    prog.reset_rate_buckets().expect("clearing the buckets");
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
    // The guard grew the program; keep an eye on it (the verifier's limit is 1M processed).
    let (xlated, verified) = prog.size().unwrap();
    eprintln!("XDP program: {xlated:?} xlated instructions, {verified:?} verified");
    assert!(xlated.is_some_and(|n| n < 2_000), "{xlated:?} instructions");
    assert!(verified.is_none_or(|n| n < 20_000), "{verified:?} verified");

    let all = fixtures::load();
    fixtures::assert_original_cases_covered(&all);
    // The guard's verdicts are covered for plain IPv4, plain IPv6 and VLAN-tagged frames.
    let family = |f: &Fixture| match u16::from_be_bytes([f.frame[12], f.frame[13]]) {
        0x8100 | 0x88a8 => "vlan",
        0x0800 => "ipv4",
        0x86dd => "ipv6",
        _ => "other",
    };
    for kind in [Counter::DroppedNotAllowed, Counter::DroppedRate] {
        for fam in ["ipv4", "ipv6", "vlan"] {
            assert!(
                all.iter().any(|f| f.counter == kind && family(f) == fam),
                "no {fam} fixture for {kind:?}"
            );
        }
    }
    let mut want = XdpCounters::default();
    let mut failures = Vec::new();
    let mut frames = 0u64;
    for f in &all {
        configure(&mut prog, &f.config);
        for i in 0..f.prime {
            let name = format!("{} (priming run {})", f.name, i + 1);
            run(
                &prog,
                &name,
                &f.frame,
                Action::Redirect,
                Counter::Redirected,
                &mut want,
                &mut failures,
            );
        }
        for i in 0..f.repeat {
            let name = if f.repeat > 1 {
                format!("{} (run {})", f.name, i + 1)
            } else {
                f.name.clone()
            };
            run(
                &prog,
                &name,
                &f.frame,
                f.action,
                f.counter,
                &mut want,
                &mut failures,
            );
        }
        frames += u64::from(f.prime + f.repeat);
    }
    // Every prefix of a redirected frame that ends before its payload does (and still holds
    // the Ethernet header BPF_PROG_TEST_RUN requires) is malformed.
    for f in all.iter().filter(|f| f.action == Action::Redirect) {
        let ParseExpect::Ok(p) = &f.parse else {
            panic!("{}: redirected but not parseable", f.name);
        };
        // Header checks come before the guard: truncations are malformed under any config.
        configure(&mut prog, &f.config);
        for cut in 14..p.payload_offset + p.payload_len {
            frames += 1;
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
    assert_eq!(
        prog.counters().unwrap().total(),
        frames,
        "the counters sum to the frames run"
    );
}

/// The guard maps change under a loaded program: the same frame is dropped, then redirected,
/// then dropped again by rate, with no reload in between.
#[test]
#[ignore = "needs root and the eBPF object: run `cargo xtask test`"]
fn guard_maps_change_without_reloading() {
    common::require_root();
    let mut prog = load_with_ports();
    let all = fixtures::load();
    let f = redirected_frame(&all);
    let p = |s: &str| s.parse::<Prefix>().unwrap();
    prog.set_allow_list(&[p("10.0.0.0/8")]).unwrap();
    assert_eq!(prog.test_run(&f.frame).unwrap(), Action::Drop.code());
    prog.set_allow_list(&[p("10.0.0.0/8"), p("198.18.0.0/15")])
        .unwrap();
    assert_eq!(
        prog.test_run(&f.frame).unwrap(),
        Action::Pass.code(),
        "no socket: passed"
    );
    prog.set_allow_list(&[]).unwrap();
    prog.set_rate_limit(1, 2).unwrap();
    let got: Vec<u32> = (0..3).map(|_| prog.test_run(&f.frame).unwrap()).collect();
    assert_eq!(got, [2, 2, 1], "burst of 2, then dropped");
    prog.set_rate_exempt(&[p("198.18.0.2")]).unwrap();
    assert_eq!(
        prog.test_run(&f.frame).unwrap(),
        Action::Pass.code(),
        "exempt"
    );
    prog.set_rate_exempt(&[]).unwrap();
    assert_eq!(
        prog.test_run(&f.frame).unwrap(),
        Action::Drop.code(),
        "exemption lifted"
    );
    prog.set_rate_limit(0, 0).unwrap();
    assert_eq!(
        prog.test_run(&f.frame).unwrap(),
        Action::Pass.code(),
        "limit off"
    );
    let c = prog.counters().unwrap();
    assert_eq!(
        (c.dropped_not_allowed, c.dropped_rate, c.no_socket),
        (1, 2, 5),
        "{c:?}"
    );
    assert_eq!(c.total(), 8);
    assert!(prog.set_rate_limit(u32::MAX, 1).is_err());
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
