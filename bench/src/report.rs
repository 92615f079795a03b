//! Run reports: the human table, `.hgrm` files, the JSON summary and the SVG plot.
use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::Context;
use serde_json::{json, Map, Value};

use crate::{engine::LoopResult, hist::Latency, schedule::Schedule};

/// `YYYYMMDDTHHMMSSZ` (UTC) for a time since the epoch, without a date crate.
pub fn timestamp(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = ((secs / 86400) as i64, secs % 86400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The output directory: `out` if given, else `target/bench/<timestamp>[-label]` under the cwd.
pub fn out_dir(out: Option<&Path>, label: Option<&str>) -> PathBuf {
    match out {
        Some(p) => p.to_path_buf(),
        None => {
            let mut name = timestamp(SystemTime::now());
            if let Some(l) = label {
                name.push('-');
                name.extend(l.chars().map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '_'
                    }
                }));
            }
            PathBuf::from("target").join("bench").join(name)
        }
    }
}

/// A number without a trailing `.0` (`10`, `2.5`).
fn short(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.0}")
    } else {
        format!("{x}")
    }
}

/// The one-line plot title naming the run's parameters:
/// `sip calls: 5000/s offered for 10 s → 198.18.0.1:5060 (sip-xdp)`, or with a ramp
/// `sip calls: 100→5000/s ramp offered over 10 s → ...`.
pub fn plot_title(
    kind: &str,
    schedule: &Schedule,
    target: Option<&str>,
    label: Option<&str>,
) -> String {
    let what = match kind {
        "blast" => "blast datagrams",
        "mgcp" => "mgcp calls",
        "sip" => "sip calls",
        other => other,
    };
    let d = short(schedule.duration_ns as f64 / 1e9);
    let mut t = if schedule.ramp_to != schedule.rate {
        format!(
            "{what}: {}→{}/s ramp offered over {d} s",
            short(schedule.rate),
            short(schedule.ramp_to)
        )
    } else {
        format!("{what}: {}/s offered for {d} s", short(schedule.rate))
    };
    if let Some(to) = target {
        t.push_str(&format!(" → {to}"));
    }
    if let Some(l) = label {
        t.push_str(&format!(" ({l})"));
    }
    t
}

/// Everything a generator run produced, ready to be written.
pub struct RunReport<'a> {
    /// `sip`, `mgcp` or `blast`.
    pub kind: &'static str,
    /// User label.
    pub label: Option<String>,
    /// The command's settings.
    pub config: Value,
    /// The schedule used.
    pub schedule: Schedule,
    /// Loop measurements.
    pub result: LoopResult,
    /// Calls completed.
    pub completed: u64,
    /// Calls failed.
    pub failed: u64,
    /// Failures by kind.
    pub failures: Value,
    /// Retransmissions by kind.
    pub retransmissions: Value,
    /// All engine counters.
    pub counters: Value,
    /// Latency histograms.
    pub hists: Vec<&'a Latency>,
    /// Start lag histogram.
    pub lag: &'a Latency,
    /// The whole generator process's CPU time at the end of the run (set-up included), ns.
    pub process_cpu_ns: u64,
}

/// Adds the numbers of `add` into `acc` key by key (objects recursively; a key only in `add`
/// is copied): how the counters of several generator threads become one report. Non-numeric
/// leaves keep `acc`'s value.
pub fn sum_json(acc: &mut Value, add: &Value) {
    match (acc, add) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(k) {
                    Some(x) => sum_json(x, v),
                    None => {
                        a.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (a @ Value::Number(_), Value::Number(b)) => {
            if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
                *a = json!(x.saturating_add(y));
            } else if let (Some(x), Some(y)) = (a.as_f64(), b.as_f64()) {
                *a = json!(x + y);
            }
        }
        _ => {}
    }
}

/// The generator's own cost: CPU time and syscalls per call (per datagram for blast).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct GeneratorCost {
    /// Generator threads.
    pub threads: u64,
    /// Calls (blast: datagrams) the per-call figures divide by.
    pub calls: u64,
    /// CPU time of the generator threads over their loops (ns).
    pub loop_cpu_ns: u64,
    /// `loop_cpu_ns / calls`.
    pub cpu_ns_per_call: f64,
    /// The whole process's CPU (set-up and report included), ns.
    pub process_cpu_ns: u64,
    /// Loop rounds (each but the last ends in one `ppoll`).
    pub rounds: u64,
    /// `sendmmsg` calls.
    pub sendmmsg: u64,
    /// `recvmmsg` calls (including those that found nothing).
    pub recvmmsg: u64,
    /// `ppoll` calls.
    pub ppoll: u64,
    /// All three.
    pub syscalls: u64,
    /// `sendmmsg / calls`.
    pub sendmmsg_per_call: f64,
    /// `recvmmsg / calls`.
    pub recvmmsg_per_call: f64,
    /// `ppoll / calls`.
    pub ppoll_per_call: f64,
    /// `syscalls / calls`.
    pub syscalls_per_call: f64,
}

impl RunReport<'_> {
    fn duration_s(&self) -> f64 {
        self.schedule.duration_ns as f64 / 1e9
    }

    /// The generator's cost per call: per completed call, or per datagram sent for blast
    /// (which completes nothing).
    pub fn cost(&self) -> GeneratorCost {
        let r = &self.result;
        let calls = if self.kind == "blast" {
            r.offered
        } else {
            self.completed
        };
        let per = |x: u64| x as f64 / calls.max(1) as f64;
        GeneratorCost {
            threads: r.threads,
            calls,
            loop_cpu_ns: r.cpu_ns,
            cpu_ns_per_call: per(r.cpu_ns),
            process_cpu_ns: self.process_cpu_ns,
            rounds: r.rounds,
            sendmmsg: r.io.send_calls,
            recvmmsg: r.io.recv_syscalls,
            ppoll: r.io.poll_calls,
            syscalls: r.io.syscalls(),
            sendmmsg_per_call: per(r.io.send_calls),
            recvmmsg_per_call: per(r.io.recv_syscalls),
            ppoll_per_call: per(r.io.poll_calls),
            syscalls_per_call: per(r.io.syscalls()),
        }
    }

    /// The JSON summary (every number).
    pub fn json(&self, files: &Value) -> Value {
        let d = self.duration_s().max(1e-9);
        let r = &self.result;
        let mut lat = Map::new();
        for h in &self.hists {
            lat.insert(
                h.name.into(),
                serde_json::to_value(h.summary()).unwrap_or(Value::Null),
            );
        }
        json!({
            "kind": self.kind,
            "label": self.label,
            "started_at": timestamp(SystemTime::now()),
            "config": self.config,
            "schedule": {
                "rate": self.schedule.rate,
                "ramp_to": self.schedule.ramp_to,
                "duration_s": d,
                "scheduled_calls": r.scheduled,
            },
            "offered_calls": r.offered,
            "offered_cps": r.offered as f64 / d.max(r.send_span_s),
            "sent_cps": if r.send_span_s > 0.0 { r.offered as f64 / r.send_span_s } else { 0.0 },
            "completed_calls": self.completed,
            "achieved_cps": self.completed as f64 / d,
            "failed_calls": self.failed,
            "unfinished_calls": r.unfinished,
            "failures": self.failures,
            "retransmissions": self.retransmissions,
            "elapsed_s": r.elapsed_s,
            "send_span_s": r.send_span_s,
            "latency_us": lat,
            "send_lag_us": self.lag.summary(),
            "io": r.io,
            "outbox_overflow": r.outbox_overflow,
            "generator": self.cost(),
            "counters": self.counters,
            "files": files,
        })
    }

    /// The human table.
    pub fn table(&self) -> String {
        let d = self.duration_s().max(1e-9);
        let r = &self.result;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "== switchyard-bench {}{} ==",
            self.kind,
            self.label
                .as_deref()
                .map(|l| format!(" [{l}]"))
                .unwrap_or_default()
        );
        let _ = writeln!(
            s,
            "schedule   {:.0} -> {:.0} calls/s over {:.1} s ({} calls)",
            self.schedule.rate, self.schedule.ramp_to, d, r.scheduled
        );
        let _ = writeln!(
            s,
            "offered    {:>10} calls  {:>10.0} calls/s  (sent over {:.2} s: {:.0}/s)",
            r.offered,
            r.offered as f64 / d.max(r.send_span_s),
            r.send_span_s,
            if r.send_span_s > 0.0 {
                r.offered as f64 / r.send_span_s
            } else {
                0.0
            }
        );
        let _ = writeln!(
            s,
            "completed  {:>10} calls  {:>10.0} calls/s",
            self.completed,
            self.completed as f64 / d
        );
        let _ = writeln!(
            s,
            "failed     {:>10} calls  unfinished {}",
            self.failed, r.unfinished
        );
        let nonzero = |v: &Value| -> String {
            v.as_object()
                .map(|m| {
                    let parts: Vec<String> = m
                        .iter()
                        .filter(|(_, v)| v.as_u64().unwrap_or(1) != 0)
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    if parts.is_empty() {
                        "none".into()
                    } else {
                        parts.join(" ")
                    }
                })
                .unwrap_or_default()
        };
        let _ = writeln!(s, "failures   {}", nonzero(&self.failures));
        let _ = writeln!(s, "retransmit {}", nonzero(&self.retransmissions));
        let _ = writeln!(
            s,
            "io         sent {} datagrams ({} errors), received {} ({} truncated)",
            r.io.datagrams_sent, r.io.send_errors, r.io.datagrams_received, r.io.truncated
        );
        let g = self.cost();
        let unit = if self.kind == "blast" {
            "datagram"
        } else {
            "call"
        };
        let _ = writeln!(
            s,
            "generator  {} thread(s), {:.2} µs CPU per {unit}; per {unit}: sendmmsg {:.2} recvmmsg {:.2} ppoll {:.2}",
            g.threads,
            g.cpu_ns_per_call / 1000.0,
            g.sendmmsg_per_call,
            g.recvmmsg_per_call,
            g.ppoll_per_call
        );
        let _ = writeln!(
            s,
            "\n{:<14} {:>9} {:>10} {:>10} {:>10} {:>10} {:>10}",
            "latency (µs)", "count", "p50", "p90", "p99", "p99.9", "max"
        );
        for h in self.hists.iter().copied().chain([self.lag]) {
            let m = h.summary();
            let _ = writeln!(
                s,
                "{:<14} {:>9} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
                h.label, m.count, m.p50_us, m.p90_us, m.p99_us, m.p999_us, m.max_us
            );
        }
        s
    }

    /// Writes `summary.json`, one `.hgrm` per histogram, `latency.svg` and `report.txt` into
    /// `dir`; returns the table.
    pub fn write(&self, dir: &Path) -> anyhow::Result<String> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating output directory {}", dir.display()))?;
        let mut files = Map::new();
        for h in self.hists.iter().copied().chain([self.lag]) {
            let name = format!("{}.hgrm", h.name);
            std::fs::write(dir.join(&name), h.hgrm())?;
            files.insert(h.name.into(), Value::String(name));
        }
        if !self.hists.is_empty() {
            let title = plot_title(
                self.kind,
                &self.schedule,
                self.config.get("target").and_then(Value::as_str),
                self.label.as_deref(),
            );
            match crate::plot::svg(&title, &self.hists) {
                Ok(svg) => {
                    std::fs::write(dir.join("latency.svg"), svg)?;
                    files.insert("plot".into(), "latency.svg".into());
                }
                Err(e) => eprintln!("warning: SVG plot not written: {e}"),
            }
        }
        files.insert("table".into(), "report.txt".into());
        files.insert("summary".into(), "summary.json".into());
        let table = self.table();
        std::fs::write(dir.join("report.txt"), &table)?;
        let j = self.json(&Value::Object(files));
        std::fs::write(
            dir.join("summary.json"),
            serde_json::to_string_pretty(&j)? + "\n",
        )?;
        Ok(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_counters_of_threads_sum_key_by_key() {
        let mut a = json!({"completed": 3, "failures": {"timeout": 1}, "name": "x", "r": 0.5});
        let b = json!({"completed": 4, "failures": {"timeout": 2, "status_503": 1}, "name": "y", "r": 0.25});
        sum_json(&mut a, &b);
        assert_eq!(
            a,
            json!({"completed": 7, "failures": {"timeout": 3, "status_503": 1}, "name": "x", "r": 0.75})
        );
        let mut empty = json!({});
        sum_json(&mut empty, &b);
        assert_eq!(empty, b);
    }

    #[test]
    fn plot_titles_name_the_parameters() {
        let s = Schedule::ramp(5000.0, 5000.0, 10_000_000_000);
        assert_eq!(
            plot_title("sip", &s, Some("198.18.0.1:5060"), Some("sip-xdp")),
            "sip calls: 5000/s offered for 10 s → 198.18.0.1:5060 (sip-xdp)"
        );
        let s = Schedule::ramp(100.0, 2500.5, 3_500_000_000);
        assert_eq!(
            plot_title("mgcp", &s, Some("[::1]:2427"), None),
            "mgcp calls: 100→2500.5/s ramp offered over 3.5 s → [::1]:2427"
        );
    }

    #[test]
    fn timestamps() {
        let t = UNIX_EPOCH + std::time::Duration::from_secs(0);
        assert_eq!(timestamp(t), "19700101T000000Z");
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_795_910_400 + 3661);
        assert_eq!(timestamp(t), "20261129T010101Z");
        let t = UNIX_EPOCH + std::time::Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(timestamp(t), "20000229T000000Z");
    }
}
