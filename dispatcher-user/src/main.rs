//! `switchyard`: the dispatcher appliance's command line.
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use dispatcher_user::{
    config::{ConfigSource, RunArgs},
    run::run,
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
    /// Validate a config file (with any `run` flags over it) and print the effective
    /// configuration as TOML; exits 2 naming the file, line and key of the first error.
    CheckConfig(CheckArgs),
}

#[derive(clap::Args, Debug)]
struct CheckArgs {
    /// The config file (or give --config).
    file: Option<PathBuf>,
    #[command(flatten)]
    flags: RunArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Run(a) => {
            let source = ConfigSource::new(a);
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
            run(cfg)
        }
        Cmd::CheckConfig(c) => {
            let mut source = ConfigSource::new(c.flags);
            source.file = c.file.or(source.file);
            if source.file.is_none() {
                eprintln!("switchyard check-config: no file given (FILE or --config FILE)");
                std::process::exit(2);
            }
            match source.effective().and_then(|e| e.run_config().map(|_| e)) {
                Ok(e) => {
                    print!("{}", e.to_toml());
                    Ok(())
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
