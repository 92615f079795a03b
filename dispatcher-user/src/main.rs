//! `switchyard`: the dispatcher appliance's command line.
use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Parser, Subcommand};
use dispatcher_user::{
    loader::AttachMode,
    run::{run, Backend, RunConfig},
    xdp_shell::Idle,
    xsk::ZeroCopy,
};
use tracing_subscriber::EnvFilter;

/// Switchyard: a kernel-bypass dispatcher for SIP and MGCP session signalling.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the dispatcher until SIGINT/SIGTERM; prints counters on exit.
    Run(RunArgs),
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// I/O backend: xdp (XDP + AF_XDP on --iface), udp (plain sockets), auto (xdp when possible).
    #[arg(long, value_enum, default_value = "auto")]
    backend: Backend,
    /// Interface to attach the XDP program to (xdp backend).
    #[arg(long)]
    iface: Option<String>,
    /// Well-known SIP address. The xdp backend steers UDP to this port on --iface.
    #[arg(long, default_value = "0.0.0.0:5060")]
    sip: SocketAddr,
    /// Well-known MGCP address (gateway port, RFC 3435).
    #[arg(long, default_value = "0.0.0.0:2427")]
    mgcp: SocketAddr,
    /// CPU core to pin the dispatcher thread to.
    #[arg(long)]
    core: Option<usize>,
    /// XDP attach mode; native falls back to generic (with a warning) if the driver refuses.
    #[arg(long, value_enum, default_value = "native")]
    xdp_mode: AttachMode,
    /// AF_XDP zero-copy: auto tries zero-copy then copy; on requires it; off forces copy.
    #[arg(long, value_enum, default_value = "auto")]
    zero_copy: ZeroCopy,
    /// Number of rx queues to serve, from queue 0 (default: all queues of --iface).
    #[arg(long)]
    queues: Option<u32>,
    /// What the dispatcher thread does when its rings are empty.
    #[arg(long, value_enum, default_value = "poll")]
    idle: Idle,
    /// Stop after this many seconds (default: run until signalled).
    #[arg(long)]
    duration: Option<f64>,
    /// Log a counters line every this many seconds while running (0: only at exit).
    #[arg(long, default_value_t = 0.0)]
    stats_interval: f64,
    /// Write the exit counters as JSON to this file.
    #[arg(long)]
    stats_json: Option<PathBuf>,
    /// Log filter (error, warn, info, debug, trace, or a tracing EnvFilter directive).
    #[arg(long, default_value = "info", env = "SWITCHYARD_LOG")]
    log_level: String,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Run(a) => {
            tracing_subscriber::fmt()
                .with_env_filter(EnvFilter::try_new(&a.log_level)?)
                .with_target(false)
                .init();
            run(RunConfig {
                backend: a.backend,
                iface: a.iface,
                sip: a.sip,
                mgcp: a.mgcp,
                core: a.core,
                xdp_mode: a.xdp_mode,
                zero_copy: a.zero_copy,
                queues: a.queues,
                idle: a.idle,
                duration: a.duration.map(Duration::from_secs_f64),
                stats_json: a.stats_json,
                stats_interval: (a.stats_interval > 0.0)
                    .then(|| Duration::from_secs_f64(a.stats_interval)),
            })
        }
    }
}
