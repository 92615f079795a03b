//! The UDP backend receives the same datagrams as the XDP path, without privileges: the test
//! runs `switchyard --backend udp` as user `nobody` on loopback.
mod common;

use std::{
    net::{SocketAddr, UdpSocket},
    os::unix::{fs::PermissionsExt, process::CommandExt},
    process::Command,
    time::Duration,
};

use common::Switchyard;

/// `--processor-ports` arguments for two processors on free loopback ports.
fn processor_args() -> [String; 2] {
    ["--processor-ports".into(), common::free_pair().to_string()]
}

#[test]
fn udp_backend_counts_every_datagram() {
    let (sip, mgcp) = (common::free_port(), common::free_port());
    let mut cmd = Command::new(common::switchyard_bin());
    cmd.args(["run", "--backend", "udp", "--log-level", "warn"])
        .args([
            "--sip",
            &format!("127.0.0.1:{sip}"),
            "--mgcp",
            &format!("127.0.0.1:{mgcp}"),
        ])
        .args(processor_args());
    run_and_check(cmd, sip, mgcp, "udp");
}

/// As root, prove the backend needs no privileges by dropping to `nobody` (uid/gid 65534).
#[test]
#[ignore = "needs root (to switch to user nobody): run `cargo xtask test`"]
fn udp_backend_runs_unprivileged() {
    common::require_root();
    // The build tree may sit under a directory `nobody` cannot enter: run a copy from /tmp.
    let dir = std::env::temp_dir().join(format!("switchyard-nobody-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let bin = dir.join("switchyard");
    std::fs::copy(common::switchyard_bin(), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (sip, mgcp) = (common::free_port(), common::free_port());
    let mut cmd = Command::new(&bin);
    cmd.args(["run", "--backend", "udp", "--log-level", "warn"])
        .args([
            "--sip",
            &format!("127.0.0.1:{sip}"),
            "--mgcp",
            &format!("127.0.0.1:{mgcp}"),
        ])
        .args(processor_args())
        .uid(65534)
        .gid(65534);
    run_and_check_in(cmd, sip, mgcp, "nobody", &dir);
    let _ = std::fs::remove_dir_all(&dir);
}

fn run_and_check(cmd: Command, sip: u16, mgcp: u16, tag: &str) {
    run_and_check_in(cmd, sip, mgcp, tag, &std::env::temp_dir());
}

fn run_and_check_in(cmd: Command, sip: u16, mgcp: u16, tag: &str, dir: &std::path::Path) {
    let mut sy = Switchyard::start_in(cmd, tag, dir);
    sy.wait_until("the UDP sockets to be bound", || {
        UdpSocket::bind(("127.0.0.1", sip)).is_err()
            && UdpSocket::bind(("127.0.0.1", mgcp)).is_err()
    });
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut bytes = 0u64;
    for i in 0..600usize {
        let (to, msg): (SocketAddr, String) = if i % 3 == 0 {
            (
                ([127, 0, 0, 1], mgcp).into(),
                format!(
                    "CRCX {} a@gw MGCP 1.0\r\nX-Pad: {}\r\n",
                    i + 1,
                    "y".repeat(i)
                ),
            )
        } else {
            (
                ([127, 0, 0, 1], sip).into(),
                format!(
                    "INVITE sip:{i}@x SIP/2.0\r\nX-Pad: {}\r\n\r\n",
                    "z".repeat(i)
                ),
            )
        };
        bytes += msg.len() as u64;
        sender.send_to(msg.as_bytes(), to).unwrap();
        if i % 32 == 31 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let stats = sy.stop();
    assert_eq!(stats.backend, "udp");
    assert_eq!(stats.udp.unwrap().rx_datagrams, 600, "{stats:?}");
    assert_eq!(stats.router.decisions.sip, 400, "{stats:?}");
    assert_eq!(stats.router.decisions.mgcp, 200, "{stats:?}");
    assert_eq!(stats.router.decisions.bytes, bytes, "{stats:?}");
}
