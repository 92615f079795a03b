//! Operating a running dispatcher under load: `switchyard ctl drain` and configuration reload
//! (SIGHUP) with SIPp as the application server's UAC and `switchyard-processor` processes as
//! remote processors, all on loopback, and a tshark capture on `lo` as the independent witness
//! of which processor got which INVITE.
mod common;

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use common::Switchyard;

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("sy-ops-{name}-{}", std::process::id()))
}

fn start_processor(port: u16, id: u16, report_to: u16, key: &Path) -> common::Proc {
    let child = Command::new(common::processor_bin())
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--id", &id.to_string(), "--processors", "8"])
        .args(["--report-to", &format!("127.0.0.1:{report_to}")])
        .args(["--report-interval-ms", "100"])
        .arg("--report-key-file")
        .arg(key)
        .args(["--log-level", "warn"])
        .stdin(Stdio::null())
        .spawn()
        .expect("starting switchyard-processor");
    common::Proc(child)
}

fn wall() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// `switchyard ctl --json` against `sock`; the parsed reply.
fn ctl(sock: &Path, args: &[&str]) -> serde_json::Value {
    let out = Command::new(common::switchyard_bin())
        .args(["ctl", "--json", "--socket"])
        .arg(sock)
        .args(args)
        .output()
        .expect("switchyard ctl");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "ctl {args:?}: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(
        out.status.success(),
        v["ok"] == true,
        "exit status matches the reply"
    );
    v
}

/// The `ctl list` entry of processor `id`.
fn listed(sock: &Path, id: u64) -> serde_json::Value {
    let v = ctl(sock, &["list"]);
    v["data"]
        .as_array()
        .expect("list data")
        .iter()
        .find(|p| p["id"] == id)
        .cloned()
        .unwrap_or(serde_json::Value::Null)
}

/// SIPp UAC with the follow-contact scenario (ACK and BYE straight to the processor):
/// `calls` at `rate`/s, each held `hold_ms`.
fn sipp(sip: u16, calls: u32, rate: u32, hold_ms: u32, tag: &str) -> std::process::Child {
    let dir = temp(&format!("sipp-{tag}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = Path::new(common::TESTDATA).join("sipp/uac-follow-contact.xml");
    Command::new("sipp")
        .current_dir(&dir)
        .arg("-sf")
        .arg(&scenario)
        .arg(format!("127.0.0.1:{sip}"))
        .args(["-i", "127.0.0.1", "-p", &common::free_port().to_string()])
        .args(["-m", &calls.to_string(), "-r", &rate.to_string()])
        .args(["-d", &hold_ms.to_string(), "-l", "5000"])
        .args([
            "-buff_size",
            "4194304",
            "-nostdin",
            "-timeout",
            "90s",
            "-timeout_error",
        ])
        .args(["-trace_stat", "-fd", "1", "-trace_err", "-stf"])
        .arg(dir.join("stats.csv"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp (cargo xtask setup)")
}

fn sipp_result(mut child: Child, calls: u32, tag: &str) {
    let status = child.wait().expect("sipp");
    let stf = temp(&format!("sipp-{tag}")).join("stats.csv");
    let (ok, failed, unexpected) = common::sipp_totals(&stf);
    assert!(
        status.success() && ok == u64::from(calls) && failed == 0 && unexpected == 0,
        "{tag}: sipp {status}: {ok} successful, {failed} failed, {unexpected} unexpected"
    );
}

/// INVITEs to `port` in the capture: (time, Call-ID).
fn invites_to(pcap: &Path, port: u16) -> Vec<(f64, String)> {
    common::tshark_fields(
        pcap,
        &format!("sip.Method == \"INVITE\" && udp.dstport == {port}"),
        &["frame.time_epoch", "sip.Call-ID"],
    )
    .into_iter()
    .map(|r| (r[0].parse().unwrap_or(0.0), r[1].clone()))
    .collect()
}

/// The new dialogs (INVITEs with a Call-ID not seen before `t`) that reached `port` after `t`.
fn new_invites_after(pcap: &Path, port: u16, t: f64) -> usize {
    let all = invites_to(pcap, port);
    let before: HashSet<&str> = all
        .iter()
        .filter(|(at, _)| *at < t)
        .map(|(_, c)| c.as_str())
        .collect();
    all.iter()
        .filter(|(at, c)| *at >= t && !before.contains(c.as_str()))
        .count()
}

/// BYEs to `port` after `t`, and 200 answers to them from it.
fn byes_after(pcap: &Path, port: u16, t: f64) -> (usize, usize) {
    let byes = common::tshark_fields(
        pcap,
        &format!("sip.Method == \"BYE\" && udp.dstport == {port}"),
        &["frame.time_epoch"],
    );
    let oks = common::tshark_fields(
        pcap,
        &format!("sip.Status-Code == 200 && sip.CSeq.method == \"BYE\" && udp.srcport == {port}"),
        &["frame.time_epoch"],
    );
    let after = |rows: Vec<Vec<String>>| {
        rows.iter()
            .filter(|r| r[0].parse::<f64>().unwrap_or(0.0) >= t)
            .count()
    };
    (after(byes), after(oks))
}

struct Bed {
    sip: u16,
    procs: u16,
    report: u16,
    key: PathBuf,
    sock: PathBuf,
}

fn bed(tag: &str) -> Bed {
    let key = temp(&format!("{tag}-key"));
    std::fs::write(&key, format!("ops test key {tag}\n")).unwrap();
    Bed {
        // The SIP port and the next one (the config file's MGCP port).
        sip: common::free_run(2),
        procs: common::free_run(4),
        report: common::free_port(),
        key,
        sock: temp(&format!("{tag}.sock")),
    }
}

fn dispatcher(b: &Bed, extra: &[&str], tag: &str) -> Switchyard {
    let mut cmd = Command::new(common::switchyard_bin());
    cmd.args(["run", "--backend", "udp", "--log-level", "info"])
        .args(["--sip", &format!("127.0.0.1:{}", b.sip)])
        .args(["--mgcp", &format!("127.0.0.1:{}", common::free_port())])
        .args(["--report-listen", &format!("127.0.0.1:{}", b.report)])
        .arg("--report-key-file")
        .arg(&b.key)
        .arg("--ctl-socket")
        .arg(&b.sock)
        .args(extra)
        .stderr(Stdio::null());
    let mut sy = Switchyard::start(cmd, tag);
    let sock = b.sock.clone();
    sy.wait_until("the control socket", || sock.exists());
    sy
}

#[test]
#[ignore = "needs root (capture on lo), SIPp and tshark: run `cargo xtask test`"]
fn drain_under_load_sends_no_new_dialogs_and_lets_established_ones_end() {
    common::require_root();
    common::require_sipp();
    let b = bed("drain");
    let _p: Vec<common::Proc> = (0..3)
        .map(|k| start_processor(b.procs + k, k, b.report, &b.key))
        .collect();
    let remote: Vec<String> = (0..3)
        .map(|k| format!("127.0.0.1:{}", b.procs + k))
        .collect();
    let mut extra = vec!["--processors", "0"];
    for r in &remote {
        extra.extend(["--remote-processor", r.as_str()]);
    }
    let sy = dispatcher(&b, &extra, "drain");
    // Every processor up (reports every 100 ms).
    let deadline = Instant::now() + Duration::from_secs(10);
    while (0..3).any(|k| listed(&b.sock, k)["state"] != "up") {
        assert!(
            Instant::now() < deadline,
            "processors not up: {:?}",
            ctl(&b.sock, &["list"])
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let cap = common::Capture::on_host(
        "lo",
        &format!("udp portrange {}-{}", b.procs, b.procs + 3),
        "drain",
    );
    // 5,000 calls at 500/s, each held 1.5 s.
    const CALLS: u32 = 5000;
    let uac = sipp(b.sip, CALLS, 500, 1500, "drain");
    std::thread::sleep(Duration::from_secs(3));
    let before = listed(&b.sock, 1);
    assert!(before["new_dialogs"].as_u64().unwrap() > 100, "{before}");
    let drained_at = wall();
    let drain_cmd = Instant::now();
    let r = ctl(&b.sock, &["drain", "1"]);
    assert_eq!(r["ok"], true, "{r}");
    // Watch the state go draining -> drained while the load goes on.
    let mut states = Vec::new();
    let mut placed_after_drain = None;
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        let p = listed(&b.sock, 1);
        let st = p["state"].as_str().unwrap().to_owned();
        // The status is published every 100 ms: 300 ms after the command it shows the drain.
        if placed_after_drain.is_none() && drain_cmd.elapsed() >= Duration::from_millis(300) {
            placed_after_drain = Some(p["new_dialogs"].as_u64().unwrap());
        }
        if states.last() != Some(&st) {
            states.push(st.clone());
        }
        if st == "drained" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        states.first().map(String::as_str),
        Some("draining"),
        "{states:?}"
    );
    assert_eq!(
        states.last().map(String::as_str),
        Some("drained"),
        "{states:?}: {}",
        listed(&b.sock, 1)
    );
    sipp_result(uac, CALLS, "drain");
    let after = listed(&b.sock, 1);
    let stats = sy.stop();
    let pcap = cap.stop();

    // Counters: no new dialog placed on it after the drain took effect.
    assert_eq!(
        after["new_dialogs"],
        placed_after_drain.unwrap(),
        "new dialogs after the drain: {after}"
    );
    assert_eq!(
        stats.router.decisions.new_dialogs,
        u64::from(CALLS),
        "{stats:?}"
    );
    // The capture agrees: no INVITE of a new dialog reached its port after the drain (0.3 s
    // for the command to take effect), while the others kept getting them.
    assert_eq!(new_invites_after(&pcap, b.procs + 1, drained_at + 0.3), 0);
    assert!(new_invites_after(&pcap, b.procs, drained_at + 0.3) > 500);
    assert!(new_invites_after(&pcap, b.procs + 2, drained_at + 0.3) > 500);
    // Its established dialogs ended normally: BYEs after the drain, each answered by it.
    let (byes, oks) = byes_after(&pcap, b.procs + 1, drained_at);
    assert!(byes > 100, "BYEs to the draining processor: {byes}");
    assert!(oks >= byes, "every BYE answered: {byes} BYEs, {oks} 200s");
    let _ = std::fs::remove_file(&pcap);
    let _ = std::fs::remove_file(&b.key);
}

/// A config file for [`reload_under_load_adds_and_removes_processors_and_refuses_a_bad_file`]:
/// the dispatcher on `b.sip`, remote processors `ids` at `b.procs + id`.
fn config_file(b: &Bed, ids: &[u16]) -> String {
    let mut s = format!(
        "# written by ops_e2e\nbackend = \"udp\"\nsip = \"127.0.0.1:{}\"\nmgcp = \"127.0.0.1:{}\"\nprocessors = 0\nreport-listen = \"127.0.0.1:{}\"\nreport-key-file = \"{}\"\nctl-socket = \"{}\"\nlog-level = \"info\"\n",
        b.sip,
        b.sip + 1,
        b.report,
        b.key.display(),
        b.sock.display()
    );
    for id in ids {
        s.push_str(&format!(
            "\n[[processor]]\nid = {id}\nkind = \"remote\"\naddr = \"127.0.0.1:{}\"\nhealth = \"reports\"\n",
            b.procs + id
        ));
    }
    s
}

#[test]
#[ignore = "needs root (capture on lo), SIPp and tshark: run `cargo xtask test`"]
fn reload_under_load_adds_and_removes_processors_and_refuses_a_bad_file() {
    common::require_root();
    common::require_sipp();
    // The MGCP port is the SIP port + 1 in the file: `bed` reserves both.
    let b = bed("reload");
    let _p: Vec<common::Proc> = (0..3)
        .map(|k| start_processor(b.procs + k, k, b.report, &b.key))
        .collect();
    let file = temp("reload.toml");
    std::fs::write(&file, config_file(&b, &[0, 1])).unwrap();
    let mut cmd = Command::new(common::switchyard_bin());
    cmd.args(["run", "--config"])
        .arg(&file)
        .stderr(Stdio::null());
    let mut sy = Switchyard::start(cmd, "reload");
    let sock = b.sock.clone();
    sy.wait_until("the control socket", || sock.exists());
    let deadline = Instant::now() + Duration::from_secs(10);
    while (0..2).any(|k| listed(&b.sock, k)["state"] != "up") {
        assert!(
            Instant::now() < deadline,
            "processors not up: {:?}",
            ctl(&b.sock, &["list"])
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        listed(&b.sock, 2),
        serde_json::Value::Null,
        "2 is not in the file yet"
    );
    let cap = common::Capture::on_host(
        "lo",
        &format!("udp portrange {}-{}", b.procs, b.procs + 3),
        "reload",
    );
    const CALLS: u32 = 5000;
    let uac = sipp(b.sip, CALLS, 500, 500, "reload");
    std::thread::sleep(Duration::from_secs(3));

    // Remove 1, add 2; SIGHUP.
    std::fs::write(&file, config_file(&b, &[0, 2])).unwrap();
    let reloaded_at = wall();
    // SAFETY: signalling our own child by PID.
    unsafe { libc::kill(sy.child.id() as i32, libc::SIGHUP) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while listed(&b.sock, 2)["state"] != "up" {
        assert!(
            Instant::now() < deadline,
            "2 never came up: {:?}",
            ctl(&b.sock, &["list"])
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(listed(&b.sock, 1), serde_json::Value::Null, "1 is gone");
    std::thread::sleep(Duration::from_secs(2));

    // A file that does not parse is refused; the running configuration stays.
    std::fs::write(&file, "this is = = not toml\n[[processor\n").unwrap();
    // SAFETY: as above.
    unsafe { libc::kill(sy.child.id() as i32, libc::SIGHUP) };
    std::thread::sleep(Duration::from_millis(500));
    let r = ctl(&b.sock, &["reload"]);
    assert_eq!(r["ok"], false, "ctl reload of a bad file fails: {r}");
    let stats = ctl(&b.sock, &["stats"]);
    assert_eq!(
        stats["data"]["reloads"]["ok"], 1,
        "{}",
        stats["data"]["reloads"]
    );
    assert_eq!(
        stats["data"]["reloads"]["failed"], 2,
        "{}",
        stats["data"]["reloads"]
    );
    assert_eq!(
        listed(&b.sock, 2)["state"],
        "up",
        "the running pool is unchanged"
    );

    sipp_result(uac, CALLS, "reload");
    let two = listed(&b.sock, 2);
    let exit = sy.stop();
    let pcap = cap.stop();
    assert_eq!(
        exit.router.decisions.new_dialogs,
        u64::from(CALLS),
        "{exit:?}"
    );
    assert!(
        two["new_dialogs"].as_u64().unwrap() > 500,
        "the added one got dialogs: {two}"
    );
    // The capture: no new dialog reached the removed processor after the reload; the added one
    // got them.
    assert_eq!(new_invites_after(&pcap, b.procs + 1, reloaded_at + 0.3), 0);
    assert!(new_invites_after(&pcap, b.procs + 2, reloaded_at) > 500);
    let _ = std::fs::remove_file(&pcap);
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_file(&b.key);
}

/// `switchyard_forwarded_total{processor="k"}` values in a scrape.
fn forwarded_series(text: &str) -> Vec<(usize, u64)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("switchyard_forwarded_total{processor=\""))
        .filter_map(|r| {
            let (id, rest) = r.split_once('"')?;
            Some((id.parse().ok()?, rest.rsplit(' ').next()?.parse().ok()?))
        })
        .collect()
}

#[test]
#[ignore = "needs the built switchyard-bench and promtool (cargo xtask setup): run `cargo xtask test`"]
fn metrics_pass_promtool_and_forwarded_totals_equal_the_exit_counters() {
    let port = common::free_port();
    let sock = temp("metrics.sock");
    let (sy, ports) = common::udp_switchyard(
        &[
            "--metrics-listen",
            &format!("127.0.0.1:{port}"),
            "--ctl-socket",
            sock.to_str().unwrap(),
        ],
        "metrics",
    );
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while metrics_http::request(addr, "GET", "/health").map_or(0, |r| r.0) != 200 {
        assert!(Instant::now() < deadline, "/health never said healthy");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = temp("metrics-bench");
    let st = Command::new(common::bench_bin())
        .args(["sip", "--target", &format!("127.0.0.1:{}", ports.sip)])
        .args([
            "--local-ip",
            "127.0.0.1",
            "--quiet",
            "--rate",
            "300",
            "--duration",
            "2",
        ])
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::null())
        .status()
        .expect("switchyard-bench");
    assert!(st.success());
    let _ = std::fs::remove_dir_all(&out);
    // The control loop refreshes what /metrics reads every 250 ms; the traffic has stopped.
    std::thread::sleep(Duration::from_millis(800));
    let (code, head, text) = metrics_http::request(addr, "GET", "/metrics").expect("scrape");
    assert_eq!(code, 200, "{head}");
    metrics_http::promtool_check(&text).unwrap_or_else(|e| panic!("promtool: {e}\n{text}"));
    let series = forwarded_series(&text);
    let stats = sy.stop();
    let exit = &stats.router.forwarded_per_processor;
    assert_eq!(series.len(), exit.len(), "{series:?} vs {exit:?}");
    for (k, v) in series {
        assert_eq!(
            v, exit[k],
            "processor {k}: /metrics {v}, exit counters {}",
            exit[k]
        );
    }
    assert!(exit.iter().sum::<u64>() >= 600, "{exit:?}");
    assert!(
        text.contains(&format!(
            "switchyard_router_decisions_total{{decision=\"new_dialog\"}} {}",
            stats.router.decisions.new_dialogs
        )),
        "new dialogs match"
    );
}
