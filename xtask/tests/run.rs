//! `cargo xtask run` as a new user runs it: real SIP calls and MGCP connections through the
//! testbed, and the report at the end. Root (netns, veth, XDP); `cargo xtask test` runs it.
use std::{process::Command, sync::Mutex};

/// One run at a time: two at once on two cores would measure each other.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn xtask_run(extra: &[&str], tag: &str) -> (bool, String) {
    xtask::testbed::require_root();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["run", "--seconds", "2", "--rate", "500"])
        .args(["--name", &xtask::testbed::unique_name(tag)])
        .args(extra)
        .current_dir(root)
        .output()
        .expect("running the xtask binary");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The value after `word` on `line` (e.g. `offered 500`).
fn after(line: &str, word: &str) -> u64 {
    let mut it = line.split_whitespace();
    it.by_ref().find(|w| *w == word);
    it.next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no number after {word:?} in {line:?}"))
}

#[test]
#[ignore = "needs root: run with `cargo xtask test`"]
fn a_run_ends_with_a_report_where_every_call_completed() {
    let (ok, text) = xtask_run(&[], "xr");
    assert!(ok, "cargo xtask run failed:\n{text}");
    for (label, first) in [
        ("SIP calls", "INVITE→200"),
        ("MGCP connections", "CRCX→200"),
    ] {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no {label} line in\n{text}"));
        let offered = after(line, "offered");
        assert!(offered >= 400, "{line}");
        assert_eq!(after(line, "completed"), offered, "{line}");
        assert_eq!(after(line, "failed"), 0, "{line}");
        assert!(line.contains(first) && line.contains("p99"), "{line}");
    }
    for needle in [
        "dialogs per proc.  #0 ",
        "XDP verdicts",
        "dispatcher CPU",
        "invite_200.hgrm",
        "latency.svg",
        "every call completed",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    assert!(
        !text.contains('\u{1b}'),
        "ANSI escapes in output that is not a terminal"
    );
}

#[test]
#[ignore = "needs root: run with `cargo xtask test`"]
fn a_run_with_failing_calls_exits_non_zero_and_names_the_failures() {
    // Two processors of one unit each, calls held 500 ms at 250/s per protocol: most are
    // refused (503 / 403).
    let (ok, text) = xtask_run(&["--capacity", "1"], "xf");
    assert!(!ok, "a run with failed calls must fail:\n{text}");
    assert!(text.contains("calls FAILED"), "{text}");
    assert!(
        text.contains("sip status_503") && text.contains("mgcp overload"),
        "failure kinds named:\n{text}"
    );
}
