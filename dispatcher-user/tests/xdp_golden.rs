//! Golden-frame tests of the XDP program through `BPF_PROG_TEST_RUN` (Katran-style): the real
//! object, the kernel's verifier and helpers, one frame at a time, checking the action returned
//! and the counter each frame lands in.
//!
//! A real AF_XDP socket (bound to a testbed veth) sits in the XSKMAP so that well-known-port
//! frames really resolve to `XDP_REDIRECT`. Needs root: run through `cargo xtask test`.
mod common;

use std::net::SocketAddr;

use dispatcher_common::PortProto;
use xdp_io::{
    frame::{header_len, write_headers, FrameAddr},
    loader::{XdpCounters, XdpProgram},
    xsk::{XskConfig, XskQueue},
};
use xtask::testbed::{in_netns, Testbed};

const XDP_PASS: u32 = 2;
const XDP_REDIRECT: u32 = 4;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    Redirect,
    Pass,
    Malformed,
}

fn udp(src: &str, dst: &str, vlan: Option<u16>, payload: &[u8]) -> Vec<u8> {
    let a = FrameAddr {
        src_mac: [2, 0, 0, 0, 0, 2],
        dst_mac: [2, 0, 0, 0, 0, 1],
        vlan,
        src: src.parse::<SocketAddr>().unwrap(),
        dst: dst.parse::<SocketAddr>().unwrap(),
    };
    let mut buf = vec![0u8; 1600];
    let h = header_len(&a);
    buf[h..h + payload.len()].copy_from_slice(payload);
    let n = write_headers(&mut buf, &a, payload.len()).unwrap();
    buf.truncate(n);
    buf
}

fn golden() -> Vec<(&'static str, Vec<u8>, Expect)> {
    let sip = b"INVITE sip:b@example.com SIP/2.0\r\n\r\n";
    let v4 = |dport: u16| {
        udp(
            "198.18.0.2:40000",
            &format!("198.18.0.1:{dport}"),
            None,
            sip,
        )
    };
    let mut cases = vec![
        ("ipv4 udp 5060", v4(5060), Expect::Redirect),
        ("ipv4 udp 2427", v4(2427), Expect::Redirect),
        (
            "ipv6 udp 5060",
            udp("[2001:db8:5e::2]:40000", "[2001:db8:5e::1]:5060", None, sip),
            Expect::Redirect,
        ),
        (
            "vlan ipv4 udp 5060",
            udp("198.18.0.2:40000", "198.18.0.1:5060", Some(100), sip),
            Expect::Redirect,
        ),
        (
            "vlan ipv6 udp 2427",
            udp(
                "[2001:db8:5e::2]:2727",
                "[2001:db8:5e::1]:2427",
                Some(7),
                sip,
            ),
            Expect::Redirect,
        ),
        ("ipv4 udp 5099 (processor port)", v4(5099), Expect::Pass),
        ("ipv4 udp 22", v4(22), Expect::Pass),
    ];
    // IPv4 header starts at 14 in an untagged frame.
    let mut tcp = v4(5060);
    tcp[14 + 9] = 6;
    cases.push(("ipv4 tcp 5060", tcp, Expect::Pass));
    let mut icmp = v4(5060);
    icmp[14 + 9] = 1;
    cases.push(("ipv4 icmp", icmp, Expect::Pass));
    let mut arp = v4(5060);
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    cases.push(("arp", arp, Expect::Pass));
    let mut mf = v4(5060);
    mf[14 + 6] = 0x20; // more fragments
    cases.push(("ipv4 first fragment to 5060", mf, Expect::Pass));
    let mut later = v4(5060);
    later[14 + 6] = 0x00;
    later[14 + 7] = 0x10; // offset 16*8
    cases.push(("ipv4 later fragment", later, Expect::Pass));
    let mut ext = udp("[2001:db8:5e::2]:40000", "[2001:db8:5e::1]:5060", None, sip);
    ext[14 + 6] = 0; // hop-by-hop extension header
    cases.push(("ipv6 with extension header", ext, Expect::Pass));
    let full = v4(5060);
    cases.push((
        "ethernet header only",
        full[..14].to_vec(),
        Expect::Malformed,
    ));
    cases.push((
        "truncated ipv4 header",
        full[..14 + 12].to_vec(),
        Expect::Malformed,
    ));
    cases.push((
        "truncated udp header",
        full[..14 + 20 + 4].to_vec(),
        Expect::Malformed,
    ));
    let mut ihl = v4(5060);
    ihl[14] = 0x43; // IHL 3 words
    cases.push(("ipv4 ihl < 5", ihl, Expect::Malformed));
    let mut ver = v4(5060);
    ver[14] = 0x55;
    cases.push(("ipv4 ethertype with version 5", ver, Expect::Malformed));
    let mut long = v4(5060);
    let l = long.len();
    long[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&((l as u16) + 100).to_be_bytes());
    cases.push(("udp length beyond frame", long, Expect::Malformed));
    let mut short = v4(5060);
    short[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&4u16.to_be_bytes());
    cases.push(("udp length < 8", short, Expect::Malformed));
    let vlan = udp("198.18.0.2:40000", "198.18.0.1:5060", Some(100), sip);
    cases.push(("vlan tag truncated", vlan[..16].to_vec(), Expect::Malformed));
    let v6 = udp("[2001:db8:5e::2]:40000", "[2001:db8:5e::1]:5060", None, sip);
    cases.push((
        "truncated ipv6 header",
        v6[..14 + 30].to_vec(),
        Expect::Malformed,
    ));
    cases
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
    let mut prog = XdpProgram::load().expect("XDP program loads and passes the verifier");
    prog.add_port(5060, PortProto::Sip).unwrap();
    prog.add_port(2427, PortProto::Mgcp).unwrap();
    prog.register_socket(0, &xsk.fd()).unwrap();

    let mut want = XdpCounters::default();
    let mut failures = Vec::new();
    for (name, frame, expect) in golden() {
        let action = prog
            .test_run(&frame)
            .unwrap_or_else(|e| panic!("{name}: test_run: {e}"));
        let want_action = match expect {
            Expect::Redirect => {
                want.redirected += 1;
                XDP_REDIRECT
            }
            Expect::Pass => {
                want.passed += 1;
                XDP_PASS
            }
            Expect::Malformed => {
                want.malformed += 1;
                XDP_PASS
            }
        };
        if action != want_action {
            failures.push(format!(
                "{name}: action {action}, want {want_action} ({expect:?})"
            ));
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
    let mut prog = XdpProgram::load().expect("XDP program loads");
    prog.add_port(5060, PortProto::Sip).unwrap();
    let frame = udp("198.18.0.2:40000", "198.18.0.1:5060", None, b"OPTIONS");
    assert_eq!(prog.test_run(&frame).unwrap(), XDP_PASS);
    let c = prog.counters().unwrap();
    assert_eq!((c.no_socket, c.redirected), (1, 0));
}
