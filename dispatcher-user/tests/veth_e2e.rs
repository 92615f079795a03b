//! End to end on a real veth pair in fresh network namespaces: a sender in the app namespace,
//! `switchyard --backend xdp` in the dispatcher namespace. Every well-known-port datagram must
//! reach the AF_XDP socket (count and bytes equal), other UDP must reach the kernel stack
//! (XDP_PASS), and nothing may stay attached after exit. Needs root: `cargo xtask test`.
mod common;

use std::{
    net::{SocketAddr, UdpSocket},
    time::Duration,
};

use common::Switchyard;
use xtask::testbed::{self, in_netns, Testbed};

/// Payloads of different sizes so that a byte count catches truncation or duplication.
fn payload(i: usize, kind: &str) -> Vec<u8> {
    let pad = "x".repeat(i % 700);
    format!("{kind} sip:{i}@example.com SIP/2.0\r\nX-Pad: {pad}\r\n\r\n").into_bytes()
}

/// Sends the batches, paced so a veth of one queue never overflows; returns payload bytes.
fn send_all(sock: &UdpSocket, to: SocketAddr, n: usize, kind: &str) -> u64 {
    let mut bytes = 0;
    for i in 0..n {
        let p = payload(i, kind);
        bytes += p.len() as u64;
        sock.send_to(&p, to).expect("send");
        if i % 32 == 31 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    bytes
}

#[test]
#[ignore = "needs root, netns and the eBPF object: run `cargo xtask test`"]
fn xdp_backend_receives_every_well_known_datagram_and_passes_the_rest() {
    common::require_root();
    let name = common::tb_name("e2e");
    let tb = Testbed::up(&name, 1).expect("testbed");

    // An ordinary kernel socket on a processor port in the dispatcher namespace: XDP_PASS path.
    let passed = in_netns(&tb.disp_ns, || UdpSocket::bind((testbed::DISP_V4, 5099)))
        .unwrap()
        .expect("bind 5099");
    passed
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();

    let mut cmd = Testbed::exec(&tb.disp_ns, common::switchyard_bin().to_str().unwrap());
    cmd.args(["run", "--backend", "xdp", "--iface", &tb.disp_if])
        .args(["--sip", &format!("{}:5060", testbed::DISP_V4)])
        .args(["--mgcp", &format!("{}:2427", testbed::DISP_V4)])
        .args(["--log-level", "warn"]);
    let mut sy = Switchyard::start(cmd, "e2e");
    sy.wait_until("the XDP program to be attached", || {
        tb.disp_link_details().unwrap().contains("prog/xdp")
    });
    // The socket is registered before attach, so attached means ready.

    let sender = in_netns(&tb.app_ns, || UdpSocket::bind("0.0.0.0:0"))
        .unwrap()
        .unwrap();
    let sender6 = in_netns(&tb.app_ns, || UdpSocket::bind("[::]:0"))
        .unwrap()
        .unwrap();
    let sip4: SocketAddr = format!("{}:5060", testbed::DISP_V4).parse().unwrap();
    let mgcp4: SocketAddr = format!("{}:2427", testbed::DISP_V4).parse().unwrap();
    let sip6: SocketAddr = format!("[{}]:5060", testbed::DISP_V6).parse().unwrap();
    let other: SocketAddr = format!("{}:5099", testbed::DISP_V4).parse().unwrap();

    let mut bytes = send_all(&sender, sip4, 500, "INVITE");
    bytes += send_all(&sender, mgcp4, 400, "CRCX");
    bytes += send_all(&sender6, sip6, 200, "OPTIONS");
    let other_bytes = send_all(&sender, other, 100, "NOTIFY");

    let mut buf = [0u8; 2048];
    let mut got_other = 0u64;
    let mut got_other_bytes = 0u64;
    while got_other < 100 {
        let n = passed
            .recv(&mut buf)
            .expect("datagram to port 5099 must reach the kernel socket (XDP_PASS)");
        got_other += 1;
        got_other_bytes += n as u64;
    }
    assert_eq!(got_other_bytes, other_bytes);
    std::thread::sleep(Duration::from_millis(300));

    let stats = sy.stop();
    let core = &stats.router.decisions;
    assert_eq!(stats.backend, "xdp");
    assert_eq!(
        core.sip, 700,
        "SIP datagrams (v4 + v6) reaching the core: {stats:?}"
    );
    assert_eq!(
        core.mgcp, 400,
        "MGCP datagrams reaching the core: {stats:?}"
    );
    assert_eq!(core.bytes, bytes, "payload bytes equal: {stats:?}");
    assert_eq!(stats.afxdp.unwrap().rings.rx_frames, 1100, "{stats:?}");
    assert_eq!(stats.afxdp.unwrap().shell.bad_frames, 0, "{stats:?}");
    assert_eq!(stats.xdp.unwrap().redirected, 1100, "{stats:?}");
    assert_eq!(stats.xdp.unwrap().no_socket, 0, "{stats:?}");
    assert!(stats.xdp.unwrap().passed >= 100, "{stats:?}");
    assert_eq!(
        stats.attach_mode.as_deref(),
        Some("native"),
        "veth supports native XDP: {stats:?}"
    );

    assert!(
        !tb.disp_link_details().unwrap().contains("prog/xdp"),
        "XDP program still attached after switchyard exited"
    );
    drop(tb);
    assert!(!Testbed::named(&name).exists(), "namespaces left behind");
}

#[test]
#[ignore = "needs root and netns: run `cargo xtask test`"]
fn a_killed_run_leaves_nothing_attached_and_the_next_run_starts() {
    common::require_root();
    let name = common::tb_name("st");
    let tb = Testbed::up(&name, 1).expect("testbed");
    // kill -9 gives switchyard no chance to detach: the BPF link must die with the process.
    let bin = common::switchyard_bin();
    for round in 0..2 {
        let mut cmd = Testbed::exec(&tb.disp_ns, bin.to_str().unwrap());
        cmd.args([
            "run",
            "--backend",
            "xdp",
            "--iface",
            &tb.disp_if,
            "--log-level",
            "warn",
        ]);
        let mut sy = Switchyard::start(cmd, &format!("st{round}"));
        sy.wait_until("attach", || {
            tb.disp_link_details().unwrap().contains("prog/xdp")
        });
        if round == 0 {
            // SAFETY: killing our own child by PID.
            unsafe { libc::kill(sy.child.id() as i32, libc::SIGKILL) };
            let _ = sy.child.wait();
            std::thread::sleep(Duration::from_millis(200));
            assert!(
                !tb.disp_link_details().unwrap().contains("prog/xdp"),
                "a killed switchyard left its XDP program attached"
            );
        } else {
            let stats = sy.stop();
            assert_eq!(stats.backend, "xdp");
        }
    }
    assert!(!tb.disp_link_details().unwrap().contains("prog/xdp"));
}

/// A program attached the legacy (netlink) way outlives its loader: that is what a crashed run
/// of an older kernel leaves behind. Switchyard must replace it, say so, and leave nothing.
#[test]
#[ignore = "needs root, netns and bpffs: run `cargo xtask test`"]
fn a_program_left_attached_by_netlink_is_replaced() {
    common::require_root();
    let name = common::tb_name("sl");
    let tb = Testbed::up(&name, 1).expect("testbed");
    // A private bpffs to pin the program in, so `ip` can attach it by netlink.
    let fs = std::env::temp_dir().join(format!("sy-bpffs-{}", std::process::id()));
    std::fs::create_dir_all(&fs).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "bpf", "bpf"])
        .arg(&fs)
        .status()
        .unwrap();
    assert!(mounted.success(), "mounting bpffs at {}", fs.display());
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let _fs = Unmount(fs.clone());
    let pin = fs.join("stale");
    {
        let mut prog = xdp_io::loader::XdpProgram::load().expect("load");
        prog.pin(&pin).expect("pin");
    }
    let st = std::process::Command::new("ip")
        .args([
            "-n",
            &tb.disp_ns,
            "link",
            "set",
            "dev",
            &tb.disp_if,
            "xdpgeneric",
            "pinned",
        ])
        .arg(&pin)
        .status()
        .unwrap();
    assert!(st.success(), "attaching the pinned program by netlink");
    let _ = std::fs::remove_file(&pin);
    assert!(
        tb.disp_link_details()
            .unwrap()
            .contains("name switchyard_xdp"),
        "stale program in place"
    );

    let mut cmd = Testbed::exec(&tb.disp_ns, common::switchyard_bin().to_str().unwrap());
    cmd.args([
        "run",
        "--backend",
        "xdp",
        "--iface",
        &tb.disp_if,
        "--processors",
        "0",
    ])
    .args(["--log-level", "warn"])
    .stderr(std::process::Stdio::piped());
    let mut sy = Switchyard::start(cmd, "sl");
    sy.wait_until("switchyard's own program to be attached", || {
        let d = tb.disp_link_details().unwrap();
        d.contains("prog/xdp") && !d.contains("xdpgeneric")
    });
    let stats = sy.stop_with_stderr();
    assert!(
        stats.1.contains("still attached; replacing it"),
        "switchyard must say it replaced a stale program: {}",
        stats.1
    );
    assert!(
        !tb.disp_link_details().unwrap().contains("prog/xdp"),
        "nothing left attached"
    );
    // The exit summary goes to stderr, and a pipe gets no colour escapes.
    assert!(
        stats.1.contains("switchyard ran ") && stats.1.contains("\n  processors   none\n"),
        "exit summary on stderr: {}",
        stats.1
    );
    assert!(
        !stats.1.contains('\u{1b}'),
        "ANSI escapes on a pipe: {:?}",
        stats.1
    );
}
