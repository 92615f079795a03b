//! `cargo xtask`: Switchyard's developer entry points. See the README for each command.
use std::{path::PathBuf, process::Command};

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand, ValueEnum};
use xtask::{
    setup,
    testbed::{self, Testbed},
};

#[derive(Parser)]
#[command(about = "Switchyard developer tasks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what is missing: nightly rust-src, bpf-linker, Debian test packages.
    Setup {
        /// Skip Debian packages.
        #[arg(long)]
        no_apt: bool,
    },
    /// The full test suite, as CI runs it: setup, fmt, clippy, all tests (root tests included).
    Test,
    /// Build release, bring up the testbed, run Switchyard there under a bounded load, show counters.
    Run {
        /// Backend to run.
        #[arg(long, default_value = "xdp")]
        backend: String,
        /// Seconds of load.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Calls per second offered: half SIP calls, half MGCP connections, from the load generator.
        #[arg(long, default_value_t = 2000)]
        rate: u64,
        /// Keep the testbed afterwards.
        #[arg(long)]
        keep: bool,
        /// Testbed name (namespaces NAME-app and NAME-disp).
        #[arg(long, default_value = "sy")]
        name: String,
        /// Capacity of each processor in session units (0: unlimited); a small one makes
        /// calls fail with 503 / 403, to see what a failed run reports.
        #[arg(long, default_value_t = 0)]
        capacity: u32,
        /// Rx queues of the dispatcher-side veth (switchyard runs one dispatcher thread per
        /// queue unless `-- --dispatcher-threads N` says otherwise).
        #[arg(long, default_value_t = 1)]
        queues: u32,
        /// Further `switchyard run` flags, after `--` (e.g. `-- --coalesce-us 250`).
        #[arg(last = true)]
        switchyard_args: Vec<String>,
    },
    /// The load benchmark: receive ceilings, Switchyard xdp and udp under blast, SIP and MGCP
    /// calls; prints one table of rates, latency, CPU per call (generator, dispatcher,
    /// processors, whole box), syscalls and parks per call, and ratios.
    Bench {
        /// Short run for CI (~2 minutes; asserts only that every stage produced numbers).
        #[arg(long)]
        quick: bool,
        /// Datagrams/s offered in the ceiling and blast stages.
        #[arg(long)]
        blast_rate: Option<u64>,
        /// Calls/s offered in the call stages.
        #[arg(long)]
        call_rate: Option<u64>,
        /// Seconds per stage.
        #[arg(long)]
        seconds: Option<u64>,
        /// Processor threads.
        #[arg(long, default_value_t = 2)]
        processors: u16,
        /// Selection policy.
        #[arg(long, default_value = "least-loaded")]
        policy: String,
        /// Run the SIP call stage at each of these calls/s (comma-separated), on each backend,
        /// and report the knee: the highest rate with 0 failed calls and p99 within --p99-ms.
        /// Default: none; 500,1000 with --quick.
        #[arg(long, value_delimiter = ',', value_name = "R1,R2,...")]
        ladder: Vec<u64>,
        /// The ladder's INVITE→200 p99 bound, in milliseconds.
        #[arg(long, default_value_t = 4.0)]
        p99_ms: f64,
        /// Run this peer in front of the same remote processors, same generator, in the same
        /// run (`kamailio`: its dispatcher module), as a ladder beside Switchyard's (see
        /// --peer-ladder). Default: none; kamailio with --quick or any other --peer-* flag.
        #[arg(long, value_enum)]
        peer: Option<PeerArg>,
        /// The peer stage's ladder: the peer at each of these calls/s, lowest first, each step
        /// interleaved with Switchyard's (xdp, the same remote processors) at that rate;
        /// reports each one's knee (0 failed, p99 within --p99-ms), the CPU per call at each
        /// knee and their ratios. A ladder stops after a step in which more than 1 % of the
        /// calls failed. Default with --peer: 1000,2500,5000,7500,10000; 500,1000 (2 s each)
        /// with --quick. `0`: no ladders (with --peer-rate, only its runs).
        #[arg(long, value_delimiter = ',', value_name = "R1,R2,...")]
        peer_ladder: Vec<u64>,
        /// Switchyard's rates in the peer stage's ladder. Default: those of --peer-ladder and
        /// --ladder, plus 2x and 3x the top of --peer-ladder when neither goes above it (not
        /// with --quick), so that Switchyard's knee is not capped at Kamailio's top rate.
        #[arg(long, value_delimiter = ',', value_name = "R1,R2,...")]
        peer_switchyard_ladder: Vec<u64>,
        /// Also run the peer stage once at this calls/s on each side (Switchyard xdp and udp
        /// with remote processors, then the peer: the rows `... (sip calls, remote
        /// processors)` and `kamailio (sip calls)` and their `kamailio_over_switchyard_*`
        /// ratios). Default: none (the ladders only).
        #[arg(long)]
        peer_rate: Option<u64>,
        /// Generator threads in the call stages (`switchyard-bench --threads`; thread 0 on
        /// core 0, the others round-robin over cores 0 and 1). The blasts feeding the ceiling
        /// and blast stages always use at least 2, so the raw receive loop gets more than one
        /// sending core can offer.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
        gen_threads: u16,
        /// Also run the blast and SIP call stages (each backend) once per dispatcher thread
        /// count in this list (`switchyard run --dispatcher-threads N`), on a testbed with as
        /// many rx queues as the largest, and report each against the first count. Default:
        /// 1 (no such stage); 1,2 with --quick (2 s per run).
        #[arg(long, value_delimiter = ',', value_name = "N1,N2,...",
              value_parser = clap::value_parser!(u16).range(1..=64))]
        dispatcher_threads: Vec<u16>,
        /// One more flag for every `switchyard run` the bench starts, after its own (repeat
        /// it for several: `--switchyard-arg=--coalesce-us=1000`), to
        /// measure a setting side by side with the defaults in another run. The bench
        /// records them in `bench.json` (`switchyard_args`).
        #[arg(
            long = "switchyard-arg",
            value_name = "FLAG",
            allow_hyphen_values = true
        )]
        switchyard_args: Vec<String>,
    },
    /// Build the release binaries (XDP program embedded) and a Debian package:
    /// target/debian/switchyard_<version>_<arch>.deb.
    Package,
    /// Create or delete the veth/netns testbed.
    Testbed {
        /// up or down.
        action: TestbedAction,
        /// Name prefix of namespaces and interfaces.
        #[arg(long, default_value = "sy")]
        name: String,
        /// Rx queues on the dispatcher-side veth (and as many tx queues on the app side, so
        /// flows spread over them by their hash).
        #[arg(long, default_value_t = 1)]
        queues: u32,
        /// The several-hosts topology: app, dispatcher and two processor hosts on a bridge.
        #[arg(long)]
        lan: bool,
        /// Several dispatchers behind a BIRD router with ECMP, each announcing the anycast
        /// address over BGP while `switchyard ctl health` passes (see the README).
        #[arg(long, conflicts_with = "lan")]
        anycast: bool,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PeerArg {
    /// Kamailio's dispatcher module (Debian `kamailio`, installed by `cargo xtask setup`).
    Kamailio,
    /// No peer stage (also under --quick).
    None,
}

/// What `cargo xtask bench` was asked for.
struct BenchArgs {
    quick: bool,
    blast_rate: Option<u64>,
    call_rate: Option<u64>,
    seconds: Option<u64>,
    processors: u16,
    policy: String,
    ladder: Vec<u64>,
    p99_ms: f64,
    peer: Option<PeerArg>,
    peer_ladder: Vec<u64>,
    peer_switchyard_ladder: Vec<u64>,
    peer_rate: Option<u64>,
    gen_threads: u16,
    dispatcher_threads: Vec<u16>,
    switchyard_args: Vec<String>,
}

impl BenchArgs {
    /// `--quick` with every other flag at its default (what CI runs).
    fn quick() -> Self {
        BenchArgs {
            quick: true,
            blast_rate: None,
            call_rate: None,
            seconds: None,
            processors: 2,
            policy: "least-loaded".into(),
            ladder: Vec::new(),
            p99_ms: 4.0,
            peer: None,
            peer_ladder: Vec::new(),
            peer_switchyard_ladder: Vec::new(),
            peer_rate: None,
            gen_threads: 1,
            dispatcher_threads: Vec::new(),
            switchyard_args: Vec::new(),
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum TestbedAction {
    Up,
    Down,
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(workspace_root());
    c
}

fn check(mut cmd: Command, what: &str) -> anyhow::Result<()> {
    eprintln!("xtask: {what}");
    let status = cmd.status().with_context(|| format!("spawning {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Setup { no_apt } => setup::all(!no_apt),
        Cmd::Test => test(),
        Cmd::Package => {
            // The eBPF toolchain (the package needs the XDP program); no Debian packages:
            // dpkg-deb, strip and readelf are on any machine that builds Rust on Debian.
            setup::all(false)?;
            let p = xtask::package::package(&workspace_root())?;
            println!(
                "{} (XDP program embedded in switchyard: {} bytes)",
                p.deb.display(),
                p.bpf_object_bytes
            );
            Ok(())
        }
        Cmd::Bench {
            quick,
            blast_rate,
            call_rate,
            seconds,
            processors,
            policy,
            ladder,
            p99_ms,
            peer,
            peer_ladder,
            peer_switchyard_ladder,
            peer_rate,
            gen_threads,
            dispatcher_threads,
            switchyard_args,
        } => {
            setup::all(true)?;
            bench(BenchArgs {
                quick,
                blast_rate,
                call_rate,
                seconds,
                processors,
                policy,
                ladder,
                p99_ms,
                peer,
                peer_ladder,
                peer_switchyard_ladder,
                peer_rate,
                gen_threads,
                dispatcher_threads,
                switchyard_args,
            })
        }
        Cmd::Run {
            backend,
            seconds,
            rate,
            keep,
            name,
            capacity,
            queues,
            switchyard_args,
        } => run(xtask::run::RunConfig {
            backend,
            seconds,
            rate,
            name,
            capacity,
            queues,
            keep,
            switchyard_args,
            bin_dir: workspace_root().join("target/release"),
            out_dir: workspace_root().join(format!(
                "target/bench/run-{}-{}",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
                std::process::id()
            )),
        }),
        Cmd::Testbed {
            action,
            name,
            anycast: true,
            ..
        } => anycast_testbed(action, &name),
        Cmd::Testbed {
            action,
            name,
            lan: true,
            ..
        } => match action {
            TestbedAction::Up => {
                let tb = testbed::LanTestbed::up(&name)?.keep();
                println!(
                    "LAN testbed up on a bridge: {} {}, {} {}, {} {}, {} {} (interface eth0 in each)",
                    tb.app_ns,
                    testbed::APP_V4,
                    tb.disp_ns,
                    testbed::DISP_V4,
                    tb.proc_ns[0],
                    testbed::PROC_V4[0],
                    tb.proc_ns[1],
                    testbed::PROC_V4[1]
                );
                Ok(())
            }
            TestbedAction::Down => {
                testbed::LanTestbed::named(&name).remove();
                println!("LAN testbed {name} removed");
                Ok(())
            }
        },
        Cmd::Testbed {
            action,
            name,
            queues,
            ..
        } => match action {
            TestbedAction::Up => {
                let tb = Testbed::up(&name, queues)?.keep();
                println!(
                    "testbed up: netns {} ({} {}/{}) <-> netns {} ({} {}/{})",
                    tb.app_ns,
                    tb.app_if,
                    testbed::APP_V4,
                    testbed::APP_V6,
                    tb.disp_ns,
                    tb.disp_if,
                    testbed::DISP_V4,
                    testbed::DISP_V6
                );
                Ok(())
            }
            TestbedAction::Down => {
                Testbed::named(&name).remove();
                println!("testbed {name} removed");
                Ok(())
            }
        },
    }
}

fn anycast_testbed(action: TestbedAction, name: &str) -> anyhow::Result<()> {
    use testbed::{AnycastTestbed, ANYCAST_APP_V4, ANYCAST_DISP_V4, ANYCAST_V4, PROC_V4};
    match action {
        TestbedAction::Up => {
            let mut b = cargo();
            b.args(["build", "-p", "dispatcher-user", "-p", "processor"]);
            check(b, "cargo build (switchyard, switchyard-processor)")?;
            let bin = workspace_root().join("target/debug/switchyard");
            let tb = AnycastTestbed::up(name, &bin)?.keep();
            println!("anycast testbed {name} up (state in {}):", tb.dir.display());
            println!(
                "  {}: app, {} (default via the router)",
                tb.app_ns,
                ANYCAST_APP_V4.join(", ")
            );
            println!("  {}: router, BIRD with ECMP to {ANYCAST_V4}", tb.router_ns);
            for (k, addr) in ANYCAST_DISP_V4.iter().enumerate() {
                println!(
                    "  {}: dispatcher host {addr} with {ANYCAST_V4}/32 on lo; start switchyard with --ctl-socket {}",
                    tb.disp_ns[k],
                    tb.ctl_socket(k).display()
                );
            }
            for (ns, addr) in tb.proc_ns.iter().zip(PROC_V4) {
                println!("  {ns}: processor host {addr}");
            }
            println!(
                "  route now: {:?} (announced once a dispatcher is healthy)",
                tb.anycast_next_hops()
            );
            Ok(())
        }
        TestbedAction::Down => {
            AnycastTestbed::named(name).remove();
            println!("anycast testbed {name} removed");
            Ok(())
        }
    }
}

fn bench(a: BenchArgs) -> anyhow::Result<()> {
    let quick = a.quick;
    let mut b = cargo();
    b.args(["build", "--release", "-p", "dispatcher-user", "-p", "bench"])
        .args(["-p", "processor"])
        .env("SWITCHYARD_REQUIRE_EBPF", "1");
    check(b, "cargo build --release")?;
    let root = workspace_root();
    let call_rate = a.call_rate.unwrap_or(if quick { 1_000 } else { 5_000 });
    let seconds = a.seconds.unwrap_or(if quick { 3 } else { 10 });
    let ladder = if a.ladder.is_empty() && quick {
        vec![500, 1_000]
    } else {
        a.ladder
    };
    let peer = match a.peer {
        Some(PeerArg::Kamailio) => Some(xtask::bench::Peer::Kamailio),
        Some(PeerArg::None) => None,
        // Asking for a peer ladder or rate is asking for the peer.
        None if quick
            || !a.peer_ladder.is_empty()
            || !a.peer_switchyard_ladder.is_empty()
            || a.peer_rate.is_some() =>
        {
            Some(xtask::bench::Peer::Kamailio)
        }
        None => None,
    };
    let peer_ladder = match (peer.is_some(), a.peer_ladder.is_empty(), quick) {
        (false, _, _) => Vec::new(),
        (true, false, _) => a.peer_ladder,
        (true, true, true) => vec![500, 1_000],
        (true, true, false) => vec![1_000, 2_500, 5_000, 7_500, 10_000],
    };
    let peer_switchyard_ladder = match (peer.is_some(), a.peer_switchyard_ladder.is_empty()) {
        (false, _) => Vec::new(),
        (true, false) => a.peer_switchyard_ladder,
        (true, true) => xtask::bench::switchyard_peer_ladder(&peer_ladder, &ladder, !quick),
    };
    let run = xtask::bench::run(&xtask::bench::BenchConfig {
        quick,
        blast_rate: a.blast_rate.unwrap_or(if quick { 20_000 } else { 150_000 }),
        call_rate,
        seconds,
        processors: a.processors,
        policy: a.policy,
        bin_dir: root.join("target/release"),
        out_root: root.join("target/bench"),
        ladder,
        ladder_seconds: if quick { 2 } else { seconds },
        p99_ms: a.p99_ms,
        peer,
        peer_rate: a.peer_rate,
        peer_ladder,
        peer_switchyard_ladder,
        peer_seconds: if quick { 2 } else { seconds },
        gen_threads: usize::from(a.gen_threads),
        dispatcher_threads: match (a.dispatcher_threads.is_empty(), quick) {
            (true, true) => vec![1, 2],
            (true, false) => vec![1],
            (false, _) => a
                .dispatcher_threads
                .iter()
                .map(|&n| usize::from(n))
                .collect(),
        },
        threads_seconds: if quick { 2 } else { seconds },
        switchyard_args: a.switchyard_args,
    })?;
    println!("bench artefacts: {}", run.dir.display());
    for f in &run.files {
        println!("  {}", f.display());
    }
    Ok(())
}

fn test() -> anyhow::Result<()> {
    setup::all(true)?;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the test suite includes XDP/AF_XDP/netns tests that need root; run it as root");
    }
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--check"]);
    check(fmt, "cargo fmt --check")?;
    let mut clippy = cargo();
    clippy
        .args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ])
        .env("SWITCHYARD_REQUIRE_EBPF", "1");
    check(clippy, "cargo clippy -D warnings")?;
    // The LAN tests run the switchyard-processor binary and guard_e2e switchyard-bench: build
    // every binary first.
    let mut bins = cargo();
    bins.args(["build", "--workspace", "--bins"])
        .env("SWITCHYARD_REQUIRE_EBPF", "1");
    check(bins, "cargo build --workspace --bins")?;
    let mut t = cargo();
    t.args(["test", "--workspace", "--", "--include-ignored"])
        .env("SWITCHYARD_REQUIRE_EBPF", "1");
    check(t, "cargo test --workspace")?;
    fuzz_smoke()?;
    eprintln!("xtask: cargo xtask bench --quick (smoke: every stage must produce numbers)");
    bench(BenchArgs::quick())?;
    eprintln!("xtask: all checks passed");
    Ok(())
}

/// The wire crate's fuzz targets, each run for a bounded time (`SWITCHYARD_FUZZ_SECS`, default
/// 30) from the RFC 4475 corpus as seed. A crash fails the run and leaves the input in
/// `wire/fuzz/artifacts/<target>/`.
fn fuzz_smoke() -> anyhow::Result<()> {
    setup::cargo_fuzz()?;
    let secs: u64 = std::env::var("SWITCHYARD_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let fuzz_dir = workspace_root().join("wire");
    let corpus_src = workspace_root().join("testdata/rfc4475");
    let targets = [
        "sip_scan",
        "sip_locate",
        "sip_relay",
        "mgcp_scan",
        "sip_rewrite_received",
        "sip_insert_header",
        "sip_to_tag",
        "tag_mac",
        "sip_response",
    ];
    let mut build = Command::new("cargo");
    build
        .current_dir(&fuzz_dir)
        .args(["+nightly", "fuzz", "build"]);
    check(build, "cargo fuzz build")?;
    for t in targets {
        let corpus = fuzz_dir.join("fuzz/corpus").join(t);
        std::fs::create_dir_all(&corpus)?;
        if t.starts_with("sip") {
            for e in std::fs::read_dir(&corpus_src).with_context(|| {
                format!("reading {} (the RFC 4475 corpus)", corpus_src.display())
            })? {
                let e = e?;
                if e.path().extension().is_some_and(|x| x == "dat") {
                    std::fs::copy(e.path(), corpus.join(e.file_name()))?;
                }
            }
        }
        let mut run = Command::new("cargo");
        run.current_dir(&fuzz_dir)
            .args(["+nightly", "fuzz", "run", t])
            .arg(&corpus)
            .arg("--")
            .arg(format!("-max_total_time={secs}"));
        check(run, &format!("fuzz {t} for {secs} s"))?;
    }
    Ok(())
}

fn run(cfg: xtask::run::RunConfig) -> anyhow::Result<()> {
    setup::all(true)?;
    let mut b = cargo();
    b.args(["build", "--release", "-p", "dispatcher-user", "-p", "bench"])
        .env("SWITCHYARD_REQUIRE_EBPF", "1");
    check(b, "cargo build --release")?;
    xtask::run::run(&cfg).map(|_| ())
}
