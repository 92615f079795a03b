//! `cargo xtask package` end to end: build the `.deb`, install it for real with `dpkg -i`, run
//! both binaries from it, check the files, the conffiles and the service user, have
//! `systemd-analyze verify` accept both units, and run the installed `switchyard` the way its
//! unit does: as the `switchyard` user with exactly the unit's `AmbientCapabilities=`, on a veth
//! testbed, answering a SIP INVITE. Then each of those capabilities is taken away in turn and the
//! start must fail with the error the README's capability table names — so the table, the unit
//! and the code cannot drift apart. The package is purged afterwards, also on failure.
//!
//! Root (dpkg, netns, XDP) on a throwaway machine: `cargo xtask test` runs it.
use std::{
    net::UdpSocket,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use xtask::{
    package::{self, BINARIES, CONFIG, NAME, PROCESSOR_CONFIG, PROCESSOR_UNIT, UNIT},
    testbed::{self, in_netns, Testbed},
};

/// Purges the package on drop, so a failed assertion leaves the host as it was.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let st = Command::new("dpkg").args(["-P", NAME]).status();
        if !matches!(st, Ok(s) if s.success()) {
            eprintln!("warning: `dpkg -P {NAME}` failed ({st:?}); purge it by hand");
        }
    }
}

fn sh(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawning {:?}: {e}", cmd.get_program()));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
#[ignore = "needs root and installs a package: run `cargo xtask test` on a throwaway machine"]
fn the_deb_installs_runs_and_its_unit_has_exactly_the_capabilities_xdp_needs() {
    testbed::require_root();
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let t0 = Instant::now();
    let pkg = package::package(root).expect("cargo xtask package");
    eprintln!(
        "package built in {:.1} s: {} (eBPF object {} bytes)",
        t0.elapsed().as_secs_f64(),
        pkg.deb.display(),
        pkg.bpf_object_bytes
    );

    // A leftover of an earlier, interrupted run would make dpkg -i an upgrade.
    let _ = Command::new("dpkg").args(["-P", NAME]).output();
    let (ok, text) = sh(Command::new("dpkg").arg("-i").arg(&pkg.deb));
    let _purge = Installed;
    assert!(ok, "dpkg -i failed:\n{text}");

    for bin in BINARIES {
        let (ok, text) = sh(Command::new(format!("/usr/bin/{bin}")).arg("--version"));
        assert!(
            ok && text.trim() == format!("{bin} {}", env!("CARGO_PKG_VERSION")),
            "/usr/bin/{bin} --version:\n{text}"
        );
        let image = std::fs::read(format!("/usr/bin/{bin}")).unwrap();
        if bin == "switchyard" {
            package::embedded_bpf_object(&image)
                .expect("installed switchyard embeds the XDP program");
        }
    }
    let (_, listed) = sh(Command::new("dpkg").args(["-L", NAME]));
    for path in [
        "/usr/bin/switchyard",
        "/usr/bin/switchyard-processor",
        CONFIG,
        PROCESSOR_CONFIG,
        UNIT,
        PROCESSOR_UNIT,
        "/usr/share/doc/switchyard/copyright",
        "/usr/share/doc/switchyard/changelog.gz",
        "/usr/share/doc/switchyard/README.md.gz",
    ] {
        assert!(
            listed.lines().any(|l| l == path),
            "{path} not in dpkg -L:\n{listed}"
        );
        assert!(Path::new(path).exists(), "{path} not installed");
    }
    let (_, conffiles) = sh(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", NAME]));
    for c in [CONFIG, PROCESSOR_CONFIG] {
        assert!(
            conffiles
                .lines()
                .any(|l| l.split_whitespace().next() == Some(c)),
            "{c} is not a conffile: {conffiles:?}"
        );
    }
    let (ok, user) = sh(Command::new("getent").args(["passwd", NAME]));
    assert!(ok, "postinst did not create the {NAME} user");
    assert!(user.contains("nologin"), "{user}");

    for unit in [UNIT, PROCESSOR_UNIT] {
        let (ok, text) = sh(Command::new("systemd-analyze").args(["verify", unit]));
        assert!(
            ok && text.trim().is_empty(),
            "systemd-analyze verify {unit} must be clean (needs the systemd package; it does not need systemd as PID 1):\n{text}"
        );
    }

    capabilities_are_minimal_and_sufficient();

    // Reinstalling over itself (postinst again: the user exists) must work too.
    let (ok, text) = sh(Command::new("dpkg").arg("-i").arg(&pkg.deb));
    assert!(ok, "second dpkg -i (idempotent postinst) failed:\n{text}");
    drop(_purge);
    let (still, _) = sh(Command::new("getent").args(["passwd", NAME]));
    assert!(!still, "purge left the {NAME} user behind");
    let (still, _) = sh(Command::new("getent").args(["group", NAME]));
    assert!(!still, "purge left the {NAME} group behind");
    assert!(
        !Path::new("/etc/switchyard").exists(),
        "purge left /etc/switchyard"
    );
}

/// The unit's `KEY=` value (one line).
fn unit_value(unit: &str, key: &str) -> String {
    let text = std::fs::read_to_string(unit).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{unit} has no {key}="))
        .trim()
        .to_owned()
}

fn capabilities_are_minimal_and_sufficient() {
    let ambient = unit_value(UNIT, "AmbientCapabilities");
    assert_eq!(
        unit_value(UNIT, "CapabilityBoundingSet"),
        ambient,
        "bounding set and ambient set of {UNIT} differ"
    );
    let caps: Vec<String> = ambient
        .split_whitespace()
        .map(|c| c.to_lowercase())
        .collect();
    assert_eq!(
        caps,
        [
            "cap_net_admin",
            "cap_bpf",
            "cap_perfmon",
            "cap_net_raw",
            "cap_ipc_lock"
        ],
        "the unit's capabilities changed: update this test and the README's table"
    );

    let name = testbed::unique_name("pkg");
    let tb = Testbed::up(&name, 1).expect("testbed");

    // The unit's set: attaches XDP, opens the AF_XDP socket, the INVITE is answered.
    let log = start_and_call(&tb, "xdp", &caps, None, true);
    assert!(log.contains("XDP program attached"), "{log}");

    // The plain UDP backend needs none.
    start_and_call(&tb, "udp", &[], None, true);

    // Each one taken away: the start fails, with this error.
    let memlock_below_umem = 1 << 20;
    for (missing, error, memlock) in [
        ("cap_net_admin", "failed to create map `XSKS`", None),
        ("cap_bpf", "failed to create map", None),
        (
            "cap_perfmon",
            "pointer arithmetic with it prohibited for !root",
            None,
        ),
        ("cap_net_raw", "UMEM registration failed", None),
        (
            "cap_ipc_lock",
            "No buffer space available",
            Some(memlock_below_umem),
        ),
    ] {
        let fewer: Vec<String> = caps.iter().filter(|c| *c != missing).cloned().collect();
        let log = start_and_call(&tb, "xdp", &fewer, memlock, false);
        assert!(
            log.contains(error),
            "without {missing} the start must fail with {error:?}:\n{log}"
        );
        assert!(
            !tb.disp_link_details().unwrap().contains("prog/xdp"),
            "XDP left attached after the failed start without {missing}"
        );
    }
}

/// Runs the installed `switchyard` in the testbed as the package's user with exactly `caps`
/// (ambient, inheritable and bounding; no new privileges, like the unit) and, when
/// `expect_answer`, requires a 200 to an INVITE before stopping it; otherwise requires it to exit
/// non-zero by itself. Returns its output.
fn start_and_call(
    tb: &Testbed,
    backend: &str,
    caps: &[String],
    memlock: Option<u64>,
    expect_answer: bool,
) -> String {
    let set = caps
        .iter()
        .map(|c| format!("+{}", c.trim_start_matches("cap_")))
        .collect::<Vec<_>>()
        .join(",");
    let mut cmd = Testbed::exec(&tb.disp_ns, "setpriv");
    cmd.args([
        "--reuid",
        NAME,
        "--regid",
        NAME,
        "--clear-groups",
        "--no-new-privs",
    ]);
    if set.is_empty() {
        cmd.args(["--inh-caps=-all", "--bounding-set=-all"]);
    } else {
        cmd.arg(format!("--inh-caps=-all,{set}"))
            .arg(format!("--ambient-caps=-all,{set}"))
            .arg(format!("--bounding-set=-all,{set}"));
    }
    cmd.arg("--");
    if let Some(bytes) = memlock {
        // Lowering a limit needs no privilege; below the UMEM size it is what CAP_IPC_LOCK lifts.
        cmd.arg("prlimit").arg(format!("--memlock={bytes}:{bytes}"));
    }
    cmd.args(["/usr/bin/switchyard", "run", "--backend", backend])
        .args(["--iface", &tb.disp_if])
        .args(["--sip", &format!("{}:5060", testbed::DISP_V4)])
        .args(["--mgcp", &format!("{}:2427", testbed::DISP_V4)])
        .args(["--log-level", "info"])
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let what = format!("switchyard --backend {backend} with caps [{set}]");
    let mut child = cmd.spawn().expect("spawning setpriv (util-linux)");

    if !expect_answer {
        let deadline = Instant::now() + Duration::from_secs(15);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let log = stop(child);
                panic!("{what} kept running, yet should have failed:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().unwrap();
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{what} exited 0:\n{log}");
        eprintln!("{what}: refused to start ({})", out.status);
        return log;
    }

    let answered = invite_answered(tb, &mut child);
    let exited = child.try_wait().unwrap();
    let log = stop(child);
    assert!(exited.is_none(), "{what} exited early ({exited:?}):\n{log}");
    assert!(answered, "{what}: no 200 to the INVITE within 10 s:\n{log}");
    eprintln!("{what}: INVITE answered 200");
    log
}

/// Sends one INVITE (retransmitted every 300 ms, same transaction) from the app namespace to
/// the SIP address until a 200 comes back, for up to 10 s or until `child` exits.
fn invite_answered(tb: &Testbed, child: &mut Child) -> bool {
    let sock = in_netns(&tb.app_ns, || UdpSocket::bind((testbed::APP_V4, 0)))
        .unwrap()
        .expect("bind in the app namespace");
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let port = sock.local_addr().unwrap().port();
    let app = testbed::APP_V4;
    let disp = testbed::DISP_V4;
    let invite = format!(
        "INVITE sip:bob@{disp} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {app}:{port};branch=z9hG4bK-pkg{port}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@{app}>;tag=pkg\r\n\
         To: <sip:bob@{disp}>\r\n\
         Call-ID: pkg-{port}@{app}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:alice@{app}:{port}>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
        sock.send_to(invite.as_bytes(), (disp, 5060)).unwrap();
        let until = Instant::now() + Duration::from_millis(300);
        while Instant::now() < until {
            if let Ok(n) = sock.recv(&mut buf) {
                if buf[..n].starts_with(b"SIP/2.0 200 ") {
                    return true;
                }
            }
        }
    }
    false
}

/// SIGINT, then its output.
fn stop(child: Child) -> String {
    // SAFETY: kill has no memory preconditions; the pid is our own child's (setpriv execs).
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let out = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
