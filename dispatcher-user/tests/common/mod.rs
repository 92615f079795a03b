//! Helpers shared by the root integration tests (testbed, privileges, switchyard process).
#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use dispatcher_user::report::ExitReport;
use xtask::testbed::{self, Testbed};

/// The repository's `testdata/` (SIPp scenarios), seen from this crate.
pub const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata");

/// Fails the test loudly unless running as root.
pub fn require_root() {
    xtask::testbed::require_root()
}

/// A testbed name unique to this test process and `tag`.
pub fn tb_name(tag: &str) -> String {
    xtask::testbed::unique_name(tag)
}

/// Path of the `switchyard` binary built for this test run.
pub fn switchyard_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_switchyard"))
}

/// A running switchyard child, SIGINT-ed and reaped on drop so a failing test leaves nothing.
pub struct Switchyard {
    pub child: Child,
    pub stats: PathBuf,
}

impl Switchyard {
    /// Starts `cmd` (already carrying `run ...` args) with `--stats-json` added.
    pub fn start(cmd: Command, tag: &str) -> Self {
        Self::start_in(cmd, tag, &std::env::temp_dir())
    }

    /// Like [`Switchyard::start`], writing the stats file into `dir`.
    pub fn start_in(mut cmd: Command, tag: &str, dir: &std::path::Path) -> Self {
        let stats = dir.join(format!("switchyard-{tag}-{}.json", std::process::id()));
        let _ = std::fs::remove_file(&stats);
        cmd.arg("--stats-json").arg(&stats).stdin(Stdio::null());
        let child = cmd.spawn().expect("spawning switchyard");
        Self { child, stats }
    }

    /// Sends SIGINT and waits (at most 10 s) for a clean exit; returns the exit counters.
    pub fn stop(mut self) -> ExitReport {
        // SAFETY: signalling our own child by PID.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("waiting for switchyard") {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "switchyard did not exit within 10 s of SIGINT"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "switchyard exited with {status}");
        let text = std::fs::read_to_string(&self.stats).expect("switchyard wrote no --stats-json");
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("--stats-json does not match ExitReport: {e}\n{text}"))
    }

    /// Like [`Switchyard::stop`], also returning what it wrote to stderr (the command must have
    /// been started with `stderr(Stdio::piped())`).
    pub fn stop_with_stderr(mut self) -> (ExitReport, String) {
        let mut err = self.child.stderr.take();
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(e) = err.as_mut() {
                use std::io::Read;
                let _ = e.read_to_string(&mut s);
            }
            s
        });
        let stats = self.stop();
        (stats, reader.join().unwrap_or_default())
    }

    /// Waits until the process has logged readiness, approximated by the stats of a started
    /// process: we poll for `pred` (e.g. XDP attached) up to 10 s.
    pub fn wait_until(&mut self, what: &str, mut pred: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !pred() {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                panic!("switchyard exited early ({s}) while waiting for {what}");
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Switchyard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: signalling our own child by PID.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGKILL) };
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.stats);
    }
}

/// A tshark capture of UDP on one interface of a namespace. On the testbed we capture on the
/// app side: XDP-redirected frames are invisible to pcap on the dispatcher side.
pub struct Capture {
    child: std::process::Child,
    file: PathBuf,
}

impl Capture {
    /// Starts capturing UDP on `iface` in namespace `ns`; returns once tshark has it open.
    pub fn start(ns: &str, iface: &str, tag: &str) -> Self {
        Self::spawn(Testbed::exec(ns, "tshark"), iface, "udp", tag)
    }

    /// Starts capturing on `iface` of this host's own namespace (`lo`, for loopback tests),
    /// keeping what the capture `filter` (BPF syntax) lets through.
    pub fn on_host(iface: &str, filter: &str, tag: &str) -> Self {
        Self::spawn(Command::new("tshark"), iface, filter, tag)
    }

    fn spawn(mut tshark: Command, iface: &str, filter: &str, tag: &str) -> Self {
        let file = std::env::temp_dir().join(format!("sy-cap-{tag}-{}.pcapng", std::process::id()));
        let _ = std::fs::remove_file(&file);
        let child = tshark
            .args(["-q", "-i", iface, "-B", "64", "-f", filter, "-w"])
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tshark is required (cargo xtask setup)");
        // tshark needs a moment to open the interface.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !file.exists() {
            assert!(Instant::now() < deadline, "tshark did not start capturing");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(500));
        Self { child, file }
    }

    /// Stops tshark (SIGINT, so the file is complete) and returns the file.
    pub fn stop(mut self) -> PathBuf {
        std::thread::sleep(Duration::from_millis(300));
        // SAFETY: signalling our own child by PID.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let _ = self.child.wait();
        self.file.clone()
    }
}

/// `tshark -r file -Y filter -T fields -e field...` as rows.
pub fn tshark_fields(file: &Path, filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(file).args(["-Y", filter, "-T", "fields"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("tshark");
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect()
}

/// `switchyard run --backend xdp` on the testbed with 2 processors on 5070/5071, attached.
pub fn xdp_switchyard(tb: &Testbed, extra: &[&str], tag: &str) -> Switchyard {
    let mut cmd = Testbed::exec(&tb.disp_ns, switchyard_bin().to_str().unwrap());
    cmd.args([
        "run",
        "--backend",
        "xdp",
        "--iface",
        &tb.disp_if,
        "--log-level",
        "warn",
    ])
    .args(["--sip", &format!("{}:5060", testbed::DISP_V4)])
    .args(["--mgcp", &format!("{}:2427", testbed::DISP_V4)])
    .args(["--processors", "2", "--processor-ports", "5070"])
    .args(extra);
    let mut sy = Switchyard::start(cmd, tag);
    sy.wait_until("the XDP program to be attached", || {
        tb.disp_link_details().unwrap().contains("prog/xdp")
    });
    sy
}

/// Where test ports come from: below Linux's default ephemeral range (32768-60999), so no
/// socket bound to port 0 (the generator's, a processor's, another test's) can take one
/// between the moment it is picked and the moment its switchyard binds it.
const TEST_PORTS: std::ops::Range<u16> = 30000..32700;

/// The next `n` consecutive ports to try: a cursor over [`TEST_PORTS`] shared by the tests of
/// one binary (they run in parallel), so no two of them are handed the same port; each binary
/// starts at an offset of its own (by pid), so concurrent runs rarely meet either.
fn next_candidates(n: u16) -> u16 {
    use std::sync::Mutex;
    static CURSOR: Mutex<Option<u16>> = Mutex::new(None);
    let mut c = CURSOR.lock().unwrap_or_else(|e| e.into_inner());
    let span = TEST_PORTS.end - TEST_PORTS.start;
    let mut first = match *c {
        Some(p) => p,
        None => TEST_PORTS.start + (std::process::id() % u32::from(span)) as u16,
    };
    if first + n > TEST_PORTS.end {
        first = TEST_PORTS.start;
    }
    *c = Some(first + n);
    first
}

/// Whether nothing holds loopback port `p`, for UDP and TCP alike (the metrics listener).
fn is_free(p: u16) -> bool {
    std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok()
        && std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()
}

/// The first of `n` consecutive loopback ports (UDP and TCP) that are free now and handed to
/// no other test of this binary (a test that derives ports as `p + k` must reserve them here).
pub fn free_run(n: u16) -> u16 {
    for _ in 0..TEST_PORTS.len() {
        let p = next_candidates(n);
        if (p..p + n).all(is_free) {
            return p;
        }
    }
    panic!("no {n} consecutive free loopback ports in {TEST_PORTS:?}");
}

/// A loopback port (UDP and TCP) that is free now and handed to no other test of this binary.
pub fn free_port() -> u16 {
    free_run(1)
}

/// The first of two consecutive free loopback ports (for two processors; tests in one binary
/// run in parallel, so the default 5070 would collide).
pub fn free_pair() -> u16 {
    free_run(2)
}

/// Loopback ports of a [`udp_switchyard`].
#[derive(Debug, Clone, Copy)]
pub struct UdpPorts {
    /// Well-known SIP port.
    pub sip: u16,
    /// Well-known MGCP port.
    pub mgcp: u16,
    /// First processor port (two processors).
    pub procs: u16,
}

/// `switchyard run --backend udp` on loopback with two processors, all on free ports, ready.
pub fn udp_switchyard(extra: &[&str], tag: &str) -> (Switchyard, UdpPorts) {
    udp_switchyard_inner(extra, tag, false)
}

/// Like [`udp_switchyard`], with stderr piped for [`Switchyard::stop_with_stderr`] (the logs
/// are read only at exit, so keep them short: `--log-level warn`).
#[allow(dead_code)] // not every test binary reads the logs
pub fn udp_switchyard_logged(extra: &[&str], tag: &str) -> (Switchyard, UdpPorts) {
    udp_switchyard_inner(extra, tag, true)
}

fn udp_switchyard_inner(extra: &[&str], tag: &str, piped: bool) -> (Switchyard, UdpPorts) {
    let p = UdpPorts {
        sip: free_port(),
        mgcp: free_port(),
        procs: free_pair(),
    };
    let mut cmd = Command::new(switchyard_bin());
    cmd.args(["run", "--backend", "udp", "--log-level", "warn"])
        .args(["--sip", &format!("127.0.0.1:{}", p.sip)])
        .args(["--mgcp", &format!("127.0.0.1:{}", p.mgcp)])
        .args([
            "--processors",
            "2",
            "--processor-ports",
            &p.procs.to_string(),
        ])
        .args(extra);
    if piped {
        cmd.stderr(Stdio::piped());
    }
    let mut sy = Switchyard::start(cmd, tag);
    let bound = |port: u16| std::net::UdpSocket::bind(("127.0.0.1", port)).is_err();
    sy.wait_until("the sockets to be bound", || {
        bound(p.sip) && bound(p.mgcp) && bound(p.procs + 1)
    });
    (sy, p)
}

/// Fails loudly unless SIPp is installed.
pub fn require_sipp() {
    let ok = Command::new("sipp").arg("-v").output().is_ok();
    assert!(
        ok,
        "SIPp is required (Debian sip-tester): run `cargo xtask setup`"
    );
}

/// The summary line of a SIPp `-trace_stat` CSV: (successful, failed, unexpected).
pub fn sipp_totals(csv: &Path) -> (u64, u64, u64) {
    let text =
        std::fs::read_to_string(csv).unwrap_or_else(|e| panic!("reading {}: {e}", csv.display()));
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next().expect("stat header").split(';').collect();
    let last: Vec<&str> = lines.next_back().expect("stat row").split(';').collect();
    let col = |name: &str| -> u64 {
        let i = header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("no column {name} in SIPp stats"));
        last[i].trim().parse().unwrap_or(0)
    };
    (
        col("SuccessfulCall(C)"),
        col("FailedCall(C)"),
        col("FailedUnexpectedMessage(C)"),
    )
}

/// `target/<profile>/switchyard-bench`, beside this test's `deps/` directory.
pub fn bench_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let p = exe
        .parent()
        .and_then(|d| d.parent())
        .unwrap()
        .join("switchyard-bench");
    assert!(
        p.exists(),
        "{} missing: build the binaries first (cargo build --workspace --bins)",
        p.display()
    );
    p
}

/// `switchyard-processor`, built beside the `switchyard` binary under test.
pub fn processor_bin() -> PathBuf {
    let p = switchyard_bin().with_file_name("switchyard-processor");
    assert!(
        p.exists(),
        "{} not built: run `cargo build -p processor` (cargo xtask test does)",
        p.display()
    );
    p
}

/// A child killed and reaped on drop, so a failing test leaves nothing running.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by PID.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGKILL) };
        let _ = self.0.wait();
    }
}
