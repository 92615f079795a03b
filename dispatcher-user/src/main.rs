//! `switchyard`: the dispatcher appliance's command line.
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use dispatcher_user::{
    config::{ConfigSource, RunArgs},
    run::{run, Reloader},
};
use tracing_subscriber::EnvFilter;

/// Switchyard: a kernel-bypass dispatcher for SIP and MGCP session signalling.
#[derive(Parser, Debug)]
#[command(name = "switchyard", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the dispatcher until SIGINT/SIGTERM; prints counters on exit. SIGHUP (or
    /// `switchyard ctl reload`) re-reads the config file and applies the difference.
    Run(Box<RunArgs>),
    /// Talk to a running dispatcher over its control socket.
    Ctl(CtlArgs),
    /// Validate a config file (with any `run` flags over it) and print the effective
    /// configuration as TOML; exits 2 naming the file, line and key of the first error.
    CheckConfig(Box<CheckArgs>),
}

#[derive(clap::Args, Debug)]
struct CtlArgs {
    /// The dispatcher's control socket (its --ctl-socket).
    #[arg(long, default_value = dispatcher_user::run::DEFAULT_CTL_SOCKET, env = "SWITCHYARD_CTL_SOCKET")]
    socket: PathBuf,
    /// Print the reply as JSON (for scripts) instead of text.
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    cmd: CtlCmd,
}

#[derive(Subcommand, Debug)]
enum CtlCmd {
    /// Every processor: id, address, kind, state, units in use / capacity, weight, messages
    /// forwarded, new dialogs, time since last heard.
    List,
    /// No new dialogs for processor ID; retransmissions, CANCEL and in-dialog requests still
    /// reach it. `list` shows draining, then drained when it holds nothing.
    Drain { id: u16 },
    /// Take processor ID out of service, as if it were down.
    Disable { id: u16 },
    /// Put processor ID back in service (ends drain or disable).
    Enable { id: u16 },
    /// Add a processor on another host: `id=N,HOST:PORT[,capacity=N][,health=reports|options|none]`.
    Add { spec: String },
    /// Take processor ID out of the pool.
    Remove { id: u16 },
    /// Re-read the config file and apply the difference (as SIGHUP does).
    Reload,
    /// Every counter, as JSON.
    Stats,
    /// Exit 0 when running with at least one processor up, 1 otherwise (for BGP announcers and
    /// health checks).
    Health,
}

/// `switchyard ctl`: one request, the reply printed; exit 0 on success, 1 when the dispatcher
/// refused or is unhealthy, 2 when it could not be reached.
fn ctl(a: CtlArgs) -> std::process::ExitCode {
    use dispatcher_user::control::{list_table, socket::call, Request};
    let req = match a.cmd {
        CtlCmd::List => Request::List,
        CtlCmd::Drain { id } => Request::Drain { id },
        CtlCmd::Disable { id } => Request::Disable { id },
        CtlCmd::Enable { id } => Request::Enable { id },
        CtlCmd::Add { spec } => Request::Add { spec },
        CtlCmd::Remove { id } => Request::Remove { id },
        CtlCmd::Reload => Request::Reload,
        CtlCmd::Stats => Request::Stats,
        CtlCmd::Health => Request::Health,
    };
    let reply = match call(&a.socket, &req) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("switchyard ctl: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&reply).unwrap_or_default()
        );
    } else {
        match (&req, &reply.data) {
            (Request::List, Some(d)) => {
                match serde_json::from_value::<Vec<dispatcher_user::status::ProcessorStatus>>(
                    d.clone(),
                ) {
                    Ok(p) => print!("{}", list_table(&p)),
                    Err(_) => println!("{d}"),
                }
            }
            (Request::Stats, Some(d)) => {
                println!("{}", serde_json::to_string_pretty(d).unwrap_or_default())
            }
            _ if reply.ok => println!("{}", reply.message),
            _ => eprintln!("switchyard ctl: {}", reply.message),
        }
    }
    if reply.ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    }
}

#[derive(clap::Args, Debug)]
struct CheckArgs {
    /// The config file (or give --config).
    file: Option<PathBuf>,
    #[command(flatten)]
    flags: RunArgs,
}

fn main() -> anyhow::Result<std::process::ExitCode> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Ctl(a) => Ok(ctl(a)),
        Cmd::Run(a) => {
            let source = ConfigSource::new(*a);
            let eff = source.effective()?;
            tracing_subscriber::fmt()
                .with_env_filter(EnvFilter::try_new(&eff.log_level)?)
                .with_target(false)
                .with_writer(std::io::stderr)
                .with_ansi(colour())
                .init();
            let cfg = eff.run_config()?;
            if cfg.router.tag_keys.is_unkeyed() {
                tracing::warn!("{}", processor::deploy::UNKEYED_WARNING);
            }
            // On reload the file is read again and the same flags are applied over it.
            let reloader: Reloader = source.file.is_some().then(|| {
                let source = source.clone();
                Box::new(move || source.resolve().map_err(anyhow::Error::from))
                    as Box<dyn Fn() -> anyhow::Result<dispatcher_user::run::RunConfig>>
            });
            run(cfg, reloader).map(|()| std::process::ExitCode::SUCCESS)
        }
        Cmd::CheckConfig(c) => {
            let c = *c;
            let mut source = ConfigSource::new(c.flags);
            source.file = c.file.or(source.file);
            if source.file.is_none() {
                eprintln!("switchyard check-config: no file given (FILE or --config FILE)");
                std::process::exit(2);
            }
            match source.effective().and_then(|e| e.run_config().map(|_| e)) {
                Ok(e) => {
                    print!("{}", e.to_toml());
                    Ok(std::process::ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("switchyard check-config: {e}");
                    std::process::exit(2);
                }
            }
        }
    }
}

/// Colour in logs only on a terminal, and never with `NO_COLOR` set (https://no-color.org):
/// logs redirected to a file or journal must not carry ANSI escapes.
fn colour() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}
