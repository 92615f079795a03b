//! `switchyard check-config` and `switchyard run --config` as an operator runs them: the built
//! binary, unprivileged, on files written here.
mod common;

use std::{path::PathBuf, process::Command};

/// A scratch directory for this test's files.
fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sy-config-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs `switchyard check-config FILE ARGS...` on `text`: (exit code, stdout, stderr).
fn check(name: &str, text: &str, args: &[&str]) -> (i32, String, String) {
    let path = dir(name).join("switchyard.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(common::switchyard_bin())
        .arg("check-config")
        .arg(&path)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn shipped_example_checks_and_prints_every_key() {
    let text = include_str!("../../packaging/switchyard.toml");
    let (rc, out, err) = check("example", text, &[]);
    assert_eq!(rc, 0, "{err}");
    for key in [
        "backend = \"auto\"",
        "policy = \"least-loaded\"",
        "ctl-socket = ",
        "[[processor]]",
    ] {
        assert!(out.contains(key), "{key} missing from:\n{out}");
    }
    assert_eq!(out.matches("\n[[processor]]\n").count(), 3, "{out}");
    // What it prints is itself a valid config.
    let (rc, again, err) = check("example-again", &out, &[]);
    assert_eq!(rc, 0, "{err}");
    let body = |s: &str| {
        s.lines()
            .filter(|l| !l.starts_with("# from"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(body(&again), body(&out));
}

#[test]
fn flags_override_the_file_in_check_config() {
    let (rc, out, err) = check(
        "override",
        "policy = \"hash\"\nprocessors = 3\n",
        &["--policy", "round-robin"],
    );
    assert_eq!(rc, 0, "{err}");
    assert!(out.contains("policy = \"round-robin\""), "{out}");
    assert_eq!(out.matches("kind = \"local\"").count(), 3, "{out}");
}

#[test]
fn bad_files_exit_2_naming_line_and_key() {
    let (rc, out, err) = check(
        "unknown",
        "sip = \"127.0.0.1:5060\"\n\npolicyy = \"hash\"\n",
        &[],
    );
    assert_eq!(rc, 2);
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("switchyard.toml:3:1: key `policyy`: unknown field"),
        "{err}"
    );

    let (rc, _, err) = check("value", "queue-depth = \"many\"\n", &[]);
    assert_eq!(rc, 2);
    assert!(
        err.contains("switchyard.toml:1:15: key `queue-depth`:"),
        "{err}"
    );

    let dup = "report-listen = \"127.0.0.1:5062\"\nreport-key-file = \"/k\"\nprocessors = 0\n\
               [[processor]]\nid = 1\naddr = \"10.0.0.1:5070\"\n[[processor]]\nid = 1\naddr = \"10.0.0.2:5070\"\n";
    let (rc, _, err) = check("dup", dup, &[]);
    assert_eq!(rc, 2);
    assert!(
        err.contains("switchyard.toml:8:6: key `processor[1].id`: processor id 1 is given twice"),
        "{err}"
    );

    let (rc, _, err) = check("syntax", "[[processor]\nid = 1\n", &[]);
    assert_eq!(rc, 2);
    assert!(err.contains("switchyard.toml:1:"), "{err}");

    let missing = std::env::temp_dir().join("sy-config-cli-does-not-exist.toml");
    let out = Command::new(common::switchyard_bin())
        .arg("check-config")
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

#[test]
fn run_takes_its_processors_from_the_file() {
    let d = dir("run");
    let (sip, mgcp, p) = (
        common::free_port(),
        common::free_port(),
        common::free_pair(),
    );
    let stats = d.join("exit.json");
    let text = format!(
        "backend = \"udp\"\nsip = \"127.0.0.1:{sip}\"\nmgcp = \"127.0.0.1:{mgcp}\"\nduration = 0.5\n\
         log-level = \"warn\"\nstats-json = \"{}\"\n\
         [[processor]]\nid = 0\nkind = \"local\"\naddr = \"127.0.0.1:{p}\"\n\
         [[processor]]\nid = 1\nkind = \"local\"\naddr = \"127.0.0.1:{}\"\n",
        stats.display(),
        p + 1
    );
    let path = d.join("run.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(common::switchyard_bin())
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&stats).unwrap()).unwrap();
    let procs = v["processors"].as_array().unwrap();
    let addrs: Vec<&str> = procs.iter().map(|p| p["addr"].as_str().unwrap()).collect();
    assert_eq!(
        addrs,
        [format!("127.0.0.1:{p}"), format!("127.0.0.1:{}", p + 1)]
    );
    std::fs::remove_dir_all(&d).unwrap();
}
