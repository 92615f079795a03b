//! `switchyard run`'s settings: the command-line flags ([`RunArgs`]), the TOML file (same keys,
//! kebab-case, plus `[[processor]]` tables), and how they merge into a [`RunConfig`].
//!
//! Rules: a flag given on the command line overrides the file's key of the same name; a key in
//! neither takes the default shown in `--help` (defaults are applied here, in the merge, not by
//! clap, so that "not given" can be told from "given the default"). Processors given by flags
//! (`--processors` / `--processor-ports`, `--remote-processor`) replace the file's processors of
//! that kind. [`ConfigSource::resolve`] re-reads the file on every call, so a reload (SIGHUP,
//! `switchyard ctl reload`) is a second call.
//!
//! Errors name where they are: `FILE:LINE:COL: key `x`: message` for what the TOML parser or a
//! key's type refuses, and the key path (`processor[2].id`) with its line for what validation
//! refuses.
use std::{
    collections::BTreeSet,
    fmt,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    ops::Range,
    path::{Path, PathBuf},
    str::FromStr,
    time::Duration,
};

use clap::ValueEnum;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use toml::Spanned;
use wire::SessionSizeConfig;
use xdp_io::{
    loader::{AttachMode, SourceGuard},
    prefix::Prefix,
    xsk::ZeroCopy,
};

use crate::{
    lan::{format_codes, parse_codes, Health, HealthSpec, RemoteSpec},
    pool::{Kind, ProcessorEntry, MAX_ID},
    processors::ProcessorsConfig,
    route::{
        select::Policy, MarkPort, OptionsMode, OtherMode, RouterConfig, DEFAULT_AFFINITY_CAPACITY,
    },
    run::{Backend, RunConfig},
    xdp_shell::Idle,
};
use processor::{
    config_file::{key_at, line_col},
    deploy::{PortRange, DEFAULT_MEDIA_PORTS},
};

/// Default control socket path.
pub const DEFAULT_CTL_SOCKET: &str = "/run/switchyard/ctl.sock";

/// `switchyard run`'s flags, which are also the config file's top-level keys (same names,
/// without `--`). Every field is optional: `None` (or empty) means "not given here".
#[derive(clap::Args, Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RunArgs {
    /// TOML config file with these settings as keys (see packaging/switchyard.toml); flags
    /// given here override its keys.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// I/O backend: xdp (XDP + AF_XDP on --iface), udp (plain sockets), auto (xdp when
    /// possible). [default: auto]
    #[arg(long, value_enum)]
    #[serde(default, deserialize_with = "de_enum")]
    pub backend: Option<Backend>,
    /// Interface to attach the XDP program to (xdp backend).
    #[arg(long)]
    pub iface: Option<String>,
    /// Well-known SIP address. The xdp backend steers UDP to this port on --iface.
    /// [default: 0.0.0.0:5060]
    #[arg(long)]
    pub sip: Option<SocketAddr>,
    /// Well-known MGCP address (gateway port, RFC 3435). [default: 0.0.0.0:2427]
    #[arg(long)]
    pub mgcp: Option<SocketAddr>,
    /// CPU core to pin the dispatcher thread to (one thread; the same as
    /// `--dispatcher-cores C`).
    #[arg(long)]
    pub core: Option<usize>,
    /// Dispatcher threads, each serving its own share of the rx queues (xdp) or its own
    /// SO_REUSEPORT socket per port (udp), with its own routing state (0: auto, one per served
    /// queue for xdp, capped by the number of --dispatcher-cores when given, else by the CPUs
    /// the process may run on; 1 for udp).
    /// [default: 0]
    #[arg(long)]
    pub dispatcher_threads: Option<usize>,
    /// CPU cores for the dispatcher threads, comma-separated: thread i is pinned to the i-th
    /// (round-robin when fewer; default: unpinned, or --core).
    #[arg(long, value_delimiter = ',')]
    #[serde(default)]
    pub dispatcher_cores: Vec<usize>,
    /// XDP attach mode; native falls back to generic (with a warning) if the driver refuses.
    /// [default: native]
    #[arg(long, value_enum)]
    #[serde(default, deserialize_with = "de_enum")]
    pub xdp_mode: Option<AttachMode>,
    /// AF_XDP zero-copy: auto tries zero-copy then copy; on requires it; off forces copy.
    /// [default: auto]
    #[arg(long, value_enum)]
    #[serde(default, deserialize_with = "de_enum")]
    pub zero_copy: Option<ZeroCopy>,
    /// Number of rx queues to serve, from queue 0 (default: all queues of --iface).
    #[arg(long)]
    pub queues: Option<u32>,
    /// What the dispatcher thread does when its rings are empty. [default: poll]
    #[arg(long, value_enum)]
    #[serde(default, deserialize_with = "de_enum")]
    pub idle: Option<Idle>,
    /// Under load, sleep up to this many µs between looks at the rings instead of waking for
    /// every datagram, so one wake-up serves a batch (0: always wake per datagram; see the
    /// README's "Wake-ups"). [default: 500]
    #[arg(long)]
    pub coalesce_us: Option<u64>,
    /// Stop after this many seconds (default: run until signalled).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Log a counters line every this many seconds while running (0: only at exit).
    /// [default: 0]
    #[arg(long)]
    pub stats_interval: Option<f64>,
    /// Write every exit counter as JSON to this file (`-`: to stdout). A short summary goes to
    /// stderr in any case.
    #[arg(long)]
    pub stats_json: Option<PathBuf>,
    /// Accept well-known-port datagrams only from this source prefix (repeatable; CIDR or a bare
    /// address). Others are dropped in XDP, unanswered, and counted in xdp.dropped_not_allowed.
    /// Once any prefix is given, both address families are restricted. Default: every source.
    #[arg(long = "allow-source", value_name = "CIDR")]
    #[serde(default, deserialize_with = "de_list")]
    pub allow_source: Vec<Prefix>,
    /// Per-source limit on well-known-port datagrams per second, enforced in XDP (0: off).
    /// Datagrams over it are dropped unanswered and counted in xdp.dropped_rate. [default: 0]
    #[arg(long, value_name = "N")]
    pub source_rate: Option<u32>,
    /// Datagrams a source may send at once before --source-rate applies (default: 2 x rate).
    #[arg(long, value_name = "N")]
    pub source_burst: Option<u32>,
    /// Sources (repeatable; CIDR or a bare address) that --source-rate does not apply to.
    #[arg(long = "rate-exempt", value_name = "CIDR")]
    #[serde(default, deserialize_with = "de_list")]
    pub rate_exempt: Vec<Prefix>,
    /// Number of in-chassis processor threads (ids 0..N; shorthand for N `kind = "local"`
    /// processor tables). [default: 2, or none when the file has `[[processor]]` tables]
    #[arg(long)]
    pub processors: Option<u16>,
    /// Processor k listens on port START+k (SIP and MGCP), and names it in its answers.
    /// [default: 5070]
    #[arg(long, value_name = "START")]
    pub processor_ports: Option<u16>,
    /// Address processors bind and name in Contact / endpoint ids (default: the --sip address,
    /// or 127.0.0.1 when that is 0.0.0.0).
    #[arg(long)]
    pub processor_ip: Option<IpAddr>,
    /// CPU cores for processor threads, comma-separated, used round-robin (default: unpinned).
    #[arg(long, value_delimiter = ',')]
    #[serde(default)]
    pub processor_cores: Vec<usize>,
    /// How new dialogs are spread: least-loaded, size-aware, round-robin, hash (Call-ID).
    /// [default: least-loaded]
    #[arg(long, value_enum)]
    #[serde(default, deserialize_with = "de_enum")]
    pub policy: Option<Policy>,
    /// Capacity of each processor in session units (0: unlimited). Beyond it: 503 / 403.
    /// [default: 0]
    #[arg(long)]
    pub capacity: Option<u32>,
    /// Most INVITE server transactions each processor keeps pending (answered, not yet
    /// acknowledged) at once: a new INVITE beyond it is answered 503 + Retry-After by the
    /// processor, and a processor at its cap is out of selection (503 from the dispatcher
    /// when all are). 0: unlimited. [default: 8192]
    #[arg(long)]
    pub max_pending_invites: Option<u32>,
    /// Fabric queue slots per processor; a full queue means the next candidate, or 503.
    /// [default: 4096]
    #[arg(long)]
    pub queue_depth: Option<usize>,
    /// Claim 2: forwarded INVITE/CRCX carry the chosen processor's port (and Via received/rport).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub mark_port: Option<bool>,
    /// SIP header carrying the processor port with --mark-port. [default: X-Switchyard-Port]
    #[arg(long)]
    pub mark_header: Option<String>,
    /// MGCP extension parameter carrying the processor port with --mark-port.
    /// [default: X-SY-Port]
    #[arg(long)]
    pub mark_param: Option<String>,
    /// SIP header with an explicit session size (units); else derived from SDP; else 1.
    /// [default: X-Session-Size]
    #[arg(long)]
    pub session_size_header: Option<String>,
    /// MGCP extension parameter with an explicit session size. [default: X-Size]
    #[arg(long)]
    pub session_size_param: Option<String>,
    /// OPTIONS outside a dialog: answer here (200) or forward to a processor.
    /// [default: answer]
    #[arg(long, value_enum)]
    #[serde(default, deserialize_with = "de_enum")]
    pub options: Option<OptionsMode>,
    /// Other out-of-dialog methods (REGISTER, MESSAGE, ...): reject (405/501) or forward.
    /// [default: reject]
    #[arg(long, value_enum)]
    #[serde(default, deserialize_with = "de_enum")]
    pub other_methods: Option<OtherMode>,
    /// Retry-After seconds in the dispatcher's 503 answers. [default: 5]
    #[arg(long)]
    pub retry_after: Option<u32>,
    /// Affinity table entries (INVITE transactions remembered for retransmissions/CANCEL/ACK).
    /// [default: 2097152]
    #[arg(long)]
    pub affinity_capacity: Option<usize>,
    /// Affinity entry lifetime in seconds (≥ 64·T1 = 32 s plus margin). [default: 72]
    #[arg(long)]
    pub affinity_ttl: Option<u32>,
    /// Processor answers with 180 Ringing before 200 OK.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    #[serde(rename = "send-180")]
    pub send_180: Option<bool>,
    /// Milliseconds the processor waits before answering 200 OK. [default: 0]
    #[arg(long)]
    pub answer_delay_ms: Option<u64>,
    /// RTP port range processors allocate from, split evenly between them.
    /// [default: 20000-59999]
    #[arg(long)]
    #[serde(default, deserialize_with = "de_parse")]
    pub media_ports: Option<PortRange>,
    /// File with the secret shared with processors that keys the MAC (SipHash-2-4, key derived
    /// with HMAC-SHA256) over the processor id in To-tags and MGCP connection ids; without it
    /// tags are not authenticated (a warning at start). `switchyard-processor` takes the same.
    #[arg(long, env = "SWITCHYARD_TAG_KEY_FILE")]
    pub tag_key_file: Option<PathBuf>,
    /// The secret being rotated out: tags minted under it are still accepted (new ones use
    /// --tag-key-file). Remove it once the longest dialog minted under it has ended.
    #[arg(long, env = "SWITCHYARD_TAG_KEY_PREVIOUS_FILE")]
    pub tag_key_previous_file: Option<PathBuf>,
    /// A processor on another host (repeatable; ids follow the local processors in this
    /// order unless given):
    /// `[id=N,]HOST:PORT[,capacity=N][,weight=N][,health=reports|options|none][,fail=N][,ok=N][,up=CODES]`.
    /// `reports`: a switchyard-processor sending signed load reports; `options`: any SIP
    /// server, probed with OPTIONS; `none`: always up. Replaces the file's remote processors.
    #[arg(long = "remote-processor", value_name = "SPEC")]
    #[serde(default, rename = "remote-processor", deserialize_with = "de_list")]
    pub remote_processors: Vec<RemoteSpec>,
    /// Address remote processors send load reports to (OPTIONS answers come back here too).
    #[arg(long)]
    pub report_listen: Option<SocketAddr>,
    /// File with the key shared with remote processors (reports are HMAC-SHA256 signed).
    #[arg(long, env = "SWITCHYARD_REPORT_KEY_FILE")]
    pub report_key_file: Option<PathBuf>,
    /// A remote processor silent for this long is out of selection until it reports again.
    /// [default: 800]
    #[arg(long)]
    pub report_timeout_ms: Option<u64>,
    /// OPTIONS probe interval for health=options processors. [default: 200]
    #[arg(long)]
    pub probe_interval_ms: Option<u64>,
    /// Seed of the router's random choices (its own To-tags; power-of-two-choices only for a
    /// message without a Call-ID/transaction key); default: drawn at start. Fix it to make a run's decisions reproducible.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Log filter (error, warn, info, debug, trace, or a tracing EnvFilter directive).
    /// [default: info]
    #[arg(long, env = "SWITCHYARD_LOG")]
    pub log_level: Option<String>,
    /// Control socket for `switchyard ctl` (mode 0600). [default: /run/switchyard/ctl.sock]
    #[arg(long, value_name = "PATH")]
    pub ctl_socket: Option<PathBuf>,
    /// Serve Prometheus metrics on `GET /metrics` at this address (default: off).
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics_listen: Option<SocketAddr>,
    /// The file's `[[processor]]` tables (no flag: see --processors, --remote-processor).
    #[arg(skip)]
    #[serde(default)]
    pub processor: Vec<Spanned<ProcessorTable>>,
}

/// One `[[processor]]` table of the file.
#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ProcessorTable {
    /// Stable id, 0..63 (required).
    pub id: Spanned<u16>,
    /// `local` (a thread here) or `remote` (default).
    #[serde(default)]
    pub kind: Option<Kind>,
    /// SIP/MGCP address (required).
    pub addr: Spanned<SocketAddr>,
    /// Capacity in units (default: the top-level `capacity`).
    pub capacity: Option<u32>,
    /// Relative share of new dialogs, 1..=1000 (default 1).
    pub weight: Option<Spanned<u32>>,
    /// `reports` (default), `options` or `none`; remote processors only.
    pub health: Option<Spanned<Health>>,
    /// Consecutive failed probes that take it down (default 3).
    pub health_fail: Option<Spanned<u32>>,
    /// Consecutive good answers that bring it up (default 2).
    pub health_ok: Option<Spanned<u32>>,
    /// Status codes that count as up, `200-299,486` style (default 200-299).
    pub health_up: Option<Spanned<String>>,
}

/// A configuration error, with where it is when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, when the error is in it.
    pub file: Option<PathBuf>,
    /// 1-based line and column in the file.
    pub line_col: Option<(usize, usize)>,
    /// The key path (`sip`, `processor[2].id`); `None` for syntax errors.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}:", file.display())?;
            if let Some((l, c)) = self.line_col {
                write!(f, "{l}:{c}:")?;
            }
            f.write_str(" ")?;
        }
        if let Some(k) = &self.key {
            write!(f, "key `{k}`: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    fn plain(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            file: None,
            line_col: None,
            key: Some(key.into()),
            message: message.into(),
        }
    }
}

/// Where a run's settings come from: the file (re-read by every [`ConfigSource::resolve`]) and
/// the command-line flags (fixed at start, and still overriding the file after a reload).
#[derive(Debug, Clone)]
pub struct ConfigSource {
    /// The config file (`--config`), if any.
    pub file: Option<PathBuf>,
    /// The flags given.
    pub flags: RunArgs,
}

impl ConfigSource {
    /// From the parsed command line (`--config` names the file).
    pub fn new(flags: RunArgs) -> Self {
        Self {
            file: flags.config.clone(),
            flags,
        }
    }

    /// Reads the file (again), merges the flags over it, validates: the effective settings.
    pub fn effective(&self) -> Result<Effective, ConfigError> {
        let (text, file) = match &self.file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
                    file: Some(path.clone()),
                    line_col: None,
                    key: None,
                    message: format!("cannot read: {e}"),
                })?;
                let file = parse_file(&text, path)?;
                (text, file)
            }
            None => (String::new(), RunArgs::default()),
        };
        merge(&self.flags, &file, self.file.as_deref(), &text)
    }

    /// The [`RunConfig`] to run with (reads key files; draws a seed when none is set).
    pub fn resolve(&self) -> Result<RunConfig, ConfigError> {
        self.effective()?.run_config()
    }
}

/// Parses a file's text (no validation beyond the keys' types).
pub fn parse_file(text: &str, path: &Path) -> Result<RunArgs, ConfigError> {
    toml::from_str::<RunArgs>(text).map_err(|e| toml_error(&e, text, path))
}

/// Converts toml's error into `FILE:LINE:COL: key `x`: message`.
pub fn toml_error(e: &toml::de::Error, text: &str, path: &Path) -> ConfigError {
    let (line_col, key) = match e.span() {
        Some(span) => (Some(line_col(text, span.start)), key_at(text, &span)),
        None => (None, None),
    };
    ConfigError {
        file: Some(path.to_owned()),
        line_col,
        key,
        message: e.message().trim().to_owned(),
    }
}

/// Line and column of top-level key `key` in `text`, when it is set there.
fn find_key(text: &str, key: &str) -> Option<(usize, usize)> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim_start();
        if t.starts_with('[') {
            return None; // past the top-level keys
        }
        if let Some(rest) = t.strip_prefix(key) {
            if rest.trim_start().starts_with('=') {
                return Some(line_col(text, offset + (line.len() - t.len())));
            }
        }
        offset += line.len();
    }
    None
}

/// The settings after the merge, with every default applied: what runs, and what
/// `switchyard check-config` prints (as TOML that parses back to the same).
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "kebab-case")]
pub struct Effective {
    #[serde(serialize_with = "ser_enum")]
    pub backend: Backend,
    pub iface: Option<String>,
    pub sip: SocketAddr,
    pub mgcp: SocketAddr,
    pub core: Option<usize>,
    pub dispatcher_threads: usize,
    pub dispatcher_cores: Vec<usize>,
    #[serde(serialize_with = "ser_enum")]
    pub xdp_mode: AttachMode,
    #[serde(serialize_with = "ser_enum")]
    pub zero_copy: ZeroCopy,
    pub queues: Option<u32>,
    #[serde(serialize_with = "ser_enum")]
    pub idle: Idle,
    pub coalesce_us: u64,
    pub duration: Option<f64>,
    pub stats_interval: f64,
    pub stats_json: Option<PathBuf>,
    #[serde(serialize_with = "ser_list")]
    pub allow_source: Vec<Prefix>,
    pub source_rate: u32,
    pub source_burst: Option<u32>,
    #[serde(serialize_with = "ser_list")]
    pub rate_exempt: Vec<Prefix>,
    pub processor_ip: IpAddr,
    pub processor_cores: Vec<usize>,
    #[serde(serialize_with = "ser_enum")]
    pub policy: Policy,
    pub capacity: u32,
    pub max_pending_invites: u32,
    pub queue_depth: usize,
    pub mark_port: bool,
    pub mark_header: String,
    pub mark_param: String,
    pub session_size_header: String,
    pub session_size_param: String,
    #[serde(serialize_with = "ser_enum")]
    pub options: OptionsMode,
    #[serde(serialize_with = "ser_enum")]
    pub other_methods: OtherMode,
    pub retry_after: u32,
    pub affinity_capacity: usize,
    pub affinity_ttl: u32,
    #[serde(rename = "send-180")]
    pub send_180: bool,
    pub answer_delay_ms: u64,
    #[serde(serialize_with = "ser_display")]
    pub media_ports: PortRange,
    pub tag_key_file: Option<PathBuf>,
    pub tag_key_previous_file: Option<PathBuf>,
    pub report_listen: Option<SocketAddr>,
    pub report_key_file: Option<PathBuf>,
    pub report_timeout_ms: u64,
    pub probe_interval_ms: u64,
    /// Printed by hand: a u64 beyond TOML's i64.
    #[serde(skip)]
    pub seed: Option<u64>,
    pub log_level: String,
    pub ctl_socket: PathBuf,
    pub metrics_listen: Option<SocketAddr>,
    /// The file this came from.
    #[serde(skip)]
    pub config_file: Option<PathBuf>,
    /// Every processor, by id.
    #[serde(skip)]
    pub processors: Vec<ProcessorEntry>,
}

/// A processor as printed in the effective config.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct EffectiveProcessor {
    id: u16,
    kind: Kind,
    addr: SocketAddr,
    capacity: u32,
    weight: u32,
    health: Option<Health>,
    health_fail: Option<u32>,
    health_ok: Option<u32>,
    health_up: Option<String>,
}

impl Effective {
    /// As TOML: every key, the unset optional ones as comments, the processors as
    /// `[[processor]]` tables (the `processors` / `processor-ports` shorthand expanded).
    pub fn to_toml(&self) -> String {
        let mut out = String::from("# switchyard: effective configuration\n");
        if let Some(f) = &self.config_file {
            out.push_str(&format!("# from {} and the command line\n", f.display()));
        }
        out.push_str(&toml::to_string(self).unwrap_or_else(|e| format!("# cannot print: {e}\n")));
        match self.seed {
            Some(s) if i64::try_from(s).is_ok() => out.push_str(&format!("seed = {s}\n")),
            Some(s) => out.push_str(&format!(
                "# seed = {s} (beyond what a TOML integer holds)\n"
            )),
            None => {}
        }
        let unset: Vec<&str> = [
            ("iface", self.iface.is_none()),
            ("core", self.core.is_none()),
            ("queues", self.queues.is_none()),
            ("duration", self.duration.is_none()),
            ("stats-json", self.stats_json.is_none()),
            ("source-burst", self.source_burst.is_none()),
            ("tag-key-file", self.tag_key_file.is_none()),
            (
                "tag-key-previous-file",
                self.tag_key_previous_file.is_none(),
            ),
            ("report-listen", self.report_listen.is_none()),
            ("report-key-file", self.report_key_file.is_none()),
            ("seed", self.seed.is_none()),
            ("metrics-listen", self.metrics_listen.is_none()),
        ]
        .into_iter()
        .filter_map(|(k, unset)| unset.then_some(k))
        .collect();
        if !unset.is_empty() {
            out.push_str(&format!("# not set: {}\n", unset.join(", ")));
        }
        out.push_str("# processors, processor-ports: expanded into the [[processor]] tables\n");
        #[derive(Serialize)]
        struct Tables {
            processor: Vec<EffectiveProcessor>,
        }
        let tables = Tables {
            processor: self
                .processors
                .iter()
                .map(|e| {
                    let remote = e.kind == Kind::Remote;
                    EffectiveProcessor {
                        id: e.id,
                        kind: e.kind,
                        addr: e.addr,
                        capacity: e.capacity,
                        weight: e.weight,
                        health: remote.then_some(e.health.mode),
                        health_fail: remote.then_some(e.health.fail),
                        health_ok: remote.then_some(e.health.ok),
                        health_up: remote.then(|| format_codes(&e.health.up)),
                    }
                })
                .collect(),
        };
        if !tables.processor.is_empty() {
            out.push('\n');
            out.push_str(&toml::to_string(&tables).unwrap_or_default());
        }
        out
    }

    /// The [`RunConfig`]: reads the tag key files, draws a seed when none is set.
    pub fn run_config(&self) -> Result<RunConfig, ConfigError> {
        let tag_keys = processor::deploy::tag_keys_from_files(
            self.tag_key_file.as_deref(),
            self.tag_key_previous_file.as_deref(),
        )
        .map_err(|e| ConfigError::plain("tag-key-file", e))?;
        if self.core.is_some() && !self.dispatcher_cores.is_empty() {
            return Err(ConfigError::plain(
                "dispatcher-cores",
                "give --core (one dispatcher thread) or --dispatcher-cores, not both",
            ));
        }
        let guard = SourceGuard {
            allow: self.allow_source.clone(),
            rate: self.source_rate,
            burst: self
                .source_burst
                .unwrap_or(self.source_rate.saturating_mul(2))
                .max(1),
            exempt: self.rate_exempt.clone(),
        };
        Ok(RunConfig {
            guard,
            backend: self.backend,
            iface: self.iface.clone(),
            sip: self.sip,
            mgcp: self.mgcp,
            dispatcher_threads: self.dispatcher_threads,
            dispatcher_cores: match (self.dispatcher_cores.is_empty(), self.core) {
                (true, Some(c)) => vec![c],
                _ => self.dispatcher_cores.clone(),
            },
            xdp_mode: self.xdp_mode,
            zero_copy: self.zero_copy,
            queues: self.queues,
            idle: self.idle,
            coalesce_ns: self.coalesce_us.saturating_mul(1_000),
            duration: self.duration.map(Duration::from_secs_f64),
            stats_json: self.stats_json.clone(),
            stats_interval: (self.stats_interval > 0.0)
                .then(|| Duration::from_secs_f64(self.stats_interval)),
            router: RouterConfig {
                policy: self.policy,
                session_size: SessionSizeConfig {
                    sip_header: self.session_size_header.clone().into_bytes(),
                    mgcp_param: self.session_size_param.clone().into_bytes(),
                    ..SessionSizeConfig::default()
                },
                affinity_capacity: self.affinity_capacity,
                affinity_ttl_s: self.affinity_ttl,
                options: self.options,
                other: self.other_methods,
                retry_after_s: self.retry_after,
                mark_port: self.mark_port.then(|| MarkPort {
                    sip_header: self.mark_header.clone(),
                    mgcp_param: self.mark_param.clone(),
                }),
                report_timeout_ns: self.report_timeout_ms.saturating_mul(1_000_000),
                seed: self.seed.unwrap_or_else(start_seed),
                tag_keys,
                ..RouterConfig::default()
            },
            processors: ProcessorsConfig {
                entries: self.processors.clone(),
                ip: Some(self.processor_ip),
                max_pending_invites: self.max_pending_invites,
                queue_depth: self.queue_depth,
                media_ports: self.media_ports,
                answer_delay: Duration::from_millis(self.answer_delay_ms),
                send_180: self.send_180,
                cores: self.processor_cores.clone(),
                report_listen: self.report_listen,
                report_key_file: self.report_key_file.clone(),
                probe_interval: Duration::from_millis(self.probe_interval_ms),
                coalesce_ns: self.coalesce_us.saturating_mul(1_000),
            },
            ctl_socket: self.ctl_socket.clone(),
            metrics_listen: self.metrics_listen,
            config_file: self.config_file.clone(),
        })
    }
}

/// A seed that differs between runs and between dispatchers started together: the wall clock's
/// nanoseconds mixed with the process id.
fn start_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ (u64::from(std::process::id()) << 32) ^ 0x9e37_79b9_7f4a_7c15
}

/// Error locator for the merge: names a key, and its line when the file set it and no flag did.
struct Locate<'a> {
    path: Option<&'a Path>,
    text: &'a str,
}

impl Locate<'_> {
    /// An error about top-level key `key`; `from_file`: the value came from the file.
    fn key(&self, key: &str, from_file: bool, message: impl Into<String>) -> ConfigError {
        let line_col = if from_file {
            find_key(self.text, key)
        } else {
            None
        };
        ConfigError {
            file: line_col.and(self.path.map(Path::to_owned)),
            line_col,
            key: Some(if from_file {
                key.to_owned()
            } else {
                format!("--{key}")
            }),
            message: message.into(),
        }
    }

    /// An error at `span` of the file, about key path `key`.
    fn at(&self, span: Range<usize>, key: String, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.path.map(Path::to_owned),
            line_col: Some(line_col(self.text, span.start)),
            key: Some(key),
            message: message.into(),
        }
    }
}

/// Flags over file over defaults, then validation.
fn merge(
    flags: &RunArgs,
    file: &RunArgs,
    path: Option<&Path>,
    text: &str,
) -> Result<Effective, ConfigError> {
    let loc = Locate { path, text };
    macro_rules! pick {
        ($f:ident, $default:expr) => {
            flags
                .$f
                .clone()
                .or_else(|| file.$f.clone())
                .unwrap_or($default)
        };
        ($f:ident) => {
            flags.$f.clone().or_else(|| file.$f.clone())
        };
    }
    let list = |f: &Vec<Prefix>, g: &Vec<Prefix>| if f.is_empty() { g.clone() } else { f.clone() };
    let sip = pick!(sip, SocketAddr::from(([0, 0, 0, 0], 5060)));
    let mgcp = pick!(mgcp, SocketAddr::from(([0, 0, 0, 0], 2427)));
    let processor_ip = match pick!(processor_ip) {
        Some(ip) => ip,
        None if !sip.ip().is_unspecified() => sip.ip(),
        None => Ipv4Addr::LOCALHOST.into(),
    };
    let capacity = pick!(capacity, 0);
    let source_rate = pick!(source_rate, 0);
    let e = Effective {
        backend: pick!(backend, Backend::Auto),
        iface: pick!(iface),
        sip,
        mgcp,
        core: pick!(core),
        dispatcher_threads: pick!(dispatcher_threads, 0),
        dispatcher_cores: if flags.dispatcher_cores.is_empty() {
            file.dispatcher_cores.clone()
        } else {
            flags.dispatcher_cores.clone()
        },
        xdp_mode: pick!(xdp_mode, AttachMode::Native),
        zero_copy: pick!(zero_copy, ZeroCopy::Auto),
        queues: pick!(queues),
        idle: pick!(idle, Idle::Poll),
        coalesce_us: pick!(coalesce_us, fabric::coalesce::DEFAULT_DELAY_NS / 1_000),
        duration: pick!(duration),
        stats_interval: pick!(stats_interval, 0.0),
        stats_json: pick!(stats_json),
        allow_source: list(&flags.allow_source, &file.allow_source),
        source_rate,
        source_burst: pick!(source_burst),
        rate_exempt: list(&flags.rate_exempt, &file.rate_exempt),
        processor_ip,
        processor_cores: if flags.processor_cores.is_empty() {
            file.processor_cores.clone()
        } else {
            flags.processor_cores.clone()
        },
        policy: pick!(policy, Policy::LeastLoaded),
        capacity,
        max_pending_invites: pick!(
            max_pending_invites,
            processor::sip::DEFAULT_MAX_PENDING_INVITES
        ),
        queue_depth: pick!(queue_depth, 4096),
        mark_port: pick!(mark_port, false),
        mark_header: pick!(mark_header, "X-Switchyard-Port".to_owned()),
        mark_param: pick!(mark_param, "X-SY-Port".to_owned()),
        session_size_header: pick!(session_size_header, "X-Session-Size".to_owned()),
        session_size_param: pick!(session_size_param, "X-Size".to_owned()),
        options: pick!(options, OptionsMode::Answer),
        other_methods: pick!(other_methods, OtherMode::Reject),
        retry_after: pick!(retry_after, 5),
        affinity_capacity: pick!(affinity_capacity, DEFAULT_AFFINITY_CAPACITY),
        affinity_ttl: pick!(affinity_ttl, 72),
        send_180: pick!(send_180, false),
        answer_delay_ms: pick!(answer_delay_ms, 0),
        media_ports: pick!(media_ports, DEFAULT_MEDIA_PORTS),
        tag_key_file: pick!(tag_key_file),
        tag_key_previous_file: pick!(tag_key_previous_file),
        report_listen: pick!(report_listen),
        report_key_file: pick!(report_key_file),
        report_timeout_ms: pick!(report_timeout_ms, 800),
        probe_interval_ms: pick!(probe_interval_ms, 200),
        seed: pick!(seed),
        log_level: pick!(log_level, "info".to_owned()),
        ctl_socket: pick!(ctl_socket, PathBuf::from(DEFAULT_CTL_SOCKET)),
        metrics_listen: pick!(metrics_listen),
        config_file: path.map(Path::to_owned),
        processors: processors(flags, file, &loc, processor_ip, capacity)?,
    };
    let from_file = |set_by_flag: bool| !set_by_flag;
    // Worded as before the config file for flags: "--source-burst needs --source-rate".
    let needs_rate = |key: &str, by_flag: bool| {
        if by_flag {
            ConfigError {
                file: None,
                line_col: None,
                key: None,
                message: format!("--{key} needs --source-rate"),
            }
        } else {
            loc.key(key, true, "needs source-rate")
        }
    };
    if e.source_rate == 0 && e.source_burst.is_some() {
        return Err(needs_rate("source-burst", flags.source_burst.is_some()));
    }
    if e.source_rate == 0 && !e.rate_exempt.is_empty() {
        return Err(needs_rate("rate-exempt", !flags.rate_exempt.is_empty()));
    }
    if e.sip.port() == e.mgcp.port() && (e.sip.ip() == e.mgcp.ip()) {
        return Err(loc.key(
            "mgcp",
            from_file(flags.mgcp.is_some()),
            format!("the same address as sip ({})", e.sip),
        ));
    }
    if !e.stats_interval.is_finite() || e.stats_interval < 0.0 {
        return Err(loc.key(
            "stats-interval",
            from_file(flags.stats_interval.is_some()),
            "must be a number of seconds ≥ 0",
        ));
    }
    if e.duration.is_some_and(|d| !d.is_finite() || d < 0.0) {
        return Err(loc.key(
            "duration",
            from_file(flags.duration.is_some()),
            "must be a number of seconds ≥ 0",
        ));
    }
    if e.queue_depth == 0 {
        return Err(loc.key(
            "queue-depth",
            from_file(flags.queue_depth.is_some()),
            "must be at least 1",
        ));
    }
    if tracing_subscriber::EnvFilter::try_new(&e.log_level).is_err() {
        return Err(loc.key(
            "log-level",
            from_file(flags.log_level.is_some()),
            format!("{:?} is not a log filter", e.log_level),
        ));
    }
    for p in &e.processors {
        let clash = |a: SocketAddr| {
            a.port() == p.addr.port()
                && (a.ip() == p.addr.ip()
                    || a.ip().is_unspecified()
                    || p.addr.ip().is_unspecified())
        };
        if p.kind == Kind::Local && (clash(e.sip) || clash(e.mgcp)) {
            return Err(ConfigError::plain(
                format!("processor[id={}].addr", p.id),
                format!("{} collides with the sip or mgcp address", p.addr),
            ));
        }
    }
    let remote: Vec<&ProcessorEntry> = e
        .processors
        .iter()
        .filter(|p| p.kind == Kind::Remote)
        .collect();
    if !remote.is_empty() && e.report_listen.is_none() {
        return Err(ConfigError::plain(
            "report-listen",
            "remote processors need report-listen (where they send load reports and OPTIONS answers come back)",
        ));
    }
    if remote.iter().any(|p| p.health.mode == Health::Reports) && e.report_key_file.is_none() {
        return Err(ConfigError::plain(
            "report-key-file",
            "remote processors with health = \"reports\" need report-key-file (the key shared with them)",
        ));
    }
    Ok(e)
}

/// The processor pool: locals from the shorthand or the file's local tables, remotes from
/// `--remote-processor` or the file's remote tables; ids checked.
fn processors(
    flags: &RunArgs,
    file: &RunArgs,
    loc: &Locate<'_>,
    ip: IpAddr,
    capacity: u32,
) -> Result<Vec<ProcessorEntry>, ConfigError> {
    let mut out: Vec<(ProcessorEntry, Option<Range<usize>>, String)> = Vec::new();
    let tables: Vec<(usize, &Spanned<ProcessorTable>)> =
        file.processor.iter().enumerate().collect();
    let is_local = |t: &ProcessorTable| t.kind == Some(Kind::Local);
    let flag_shorthand = flags.processors.is_some() || flags.processor_ports.is_some();
    let file_shorthand = file.processors.is_some() || file.processor_ports.is_some();
    let local_tables: Vec<_> = tables
        .iter()
        .filter(|(_, t)| is_local(t.get_ref()))
        .collect();
    if file_shorthand && !local_tables.is_empty() {
        let key = if file.processors.is_some() {
            "processors"
        } else {
            "processor-ports"
        };
        return Err(loc.key(
            key,
            true,
            "give either the processors/processor-ports shorthand or kind = \"local\" [[processor]] tables, not both",
        ));
    }
    // Locals.
    if flag_shorthand || file_shorthand || file.processor.is_empty() {
        let n = flags.processors.or(file.processors).unwrap_or(2);
        let first = flags
            .processor_ports
            .or(file.processor_ports)
            .unwrap_or(5070);
        for k in 0..n {
            let port = first.checked_add(k).ok_or_else(|| {
                loc.key(
                    "processor-ports",
                    flags.processor_ports.is_none(),
                    format!("processor-ports {first} + processors {n} exceeds 65535"),
                )
            })?;
            let entry = ProcessorEntry {
                id: k,
                kind: Kind::Local,
                addr: SocketAddr::new(ip, port),
                capacity,
                weight: 1,
                health: HealthSpec::default(),
            };
            out.push((entry, None, format!("processors (id {k})")));
        }
    } else {
        for (i, t) in &local_tables {
            out.push(table_entry(*i, t, loc, capacity)?);
        }
    }
    // Remotes: the flags', else the file's `remote-processor` specs or its remote tables.
    let remote_tables = tables.iter().filter(|(_, t)| !is_local(t.get_ref()));
    let (specs, spec_key) = if flags.remote_processors.is_empty() {
        if !file.remote_processors.is_empty() && remote_tables.clone().next().is_some() {
            return Err(loc.key(
                "remote-processor",
                true,
                "give either remote-processor specs or kind = \"remote\" [[processor]] tables, not both",
            ));
        }
        (&file.remote_processors, "remote-processor")
    } else {
        (&flags.remote_processors, "--remote-processor")
    };
    if specs.is_empty() {
        for (i, t) in remote_tables {
            out.push(table_entry(*i, t, loc, capacity)?);
        }
    } else {
        let mut next = out.iter().map(|(e, ..)| e.id + 1).max().unwrap_or(0);
        for (k, r) in specs.iter().enumerate() {
            let id = r.id.unwrap_or(next);
            next = next.max(id + 1);
            out.push((
                ProcessorEntry::remote(id, r),
                None,
                format!("{spec_key}[{k}]"),
            ));
        }
    }
    // Ids: below MAX_ID, unique.
    let mut seen: BTreeSet<u16> = BTreeSet::new();
    for (e, span, key) in &out {
        let err = |msg: String| match span {
            Some(s) => loc.at(s.clone(), format!("{key}.id"), msg),
            None => ConfigError::plain(key.clone(), msg),
        };
        if e.id >= MAX_ID {
            return Err(err(format!("id {} must be below {MAX_ID}", e.id)));
        }
        if !seen.insert(e.id) {
            return Err(err(format!("processor id {} is given twice", e.id)));
        }
    }
    let mut entries: Vec<ProcessorEntry> = out.into_iter().map(|(e, ..)| e).collect();
    entries.sort_by_key(|e| e.id);
    for w in entries.windows(2) {
        if w[0].kind == Kind::Local && w[1].kind == Kind::Local && w[0].addr == w[1].addr {
            return Err(ConfigError::plain(
                format!("processor[id={}].addr", w[1].id),
                format!("{} is also processor {}'s address", w[1].addr, w[0].id),
            ));
        }
    }
    Ok(entries)
}

/// One `[[processor]]` table (index `i`) as an entry, its id's span, its key path.
fn table_entry(
    i: usize,
    t: &Spanned<ProcessorTable>,
    loc: &Locate<'_>,
    capacity: u32,
) -> Result<(ProcessorEntry, Option<Range<usize>>, String), ConfigError> {
    let key = format!("processor[{i}]");
    let tt = t.get_ref();
    let kind = tt.kind.unwrap_or(Kind::Remote);
    let weight = match &tt.weight {
        Some(w) if !(1..=1000).contains(w.get_ref()) => {
            return Err(loc.at(w.span(), format!("{key}.weight"), "must be 1..=1000"))
        }
        Some(w) => *w.get_ref(),
        None => 1,
    };
    let mut health = HealthSpec::new(tt.health.as_ref().map_or(Health::Reports, |h| *h.get_ref()));
    if kind == Kind::Local {
        let health_key = [
            tt.health.as_ref().map(|h| ("health", h.span())),
            tt.health_fail.as_ref().map(|h| ("health-fail", h.span())),
            tt.health_ok.as_ref().map(|h| ("health-ok", h.span())),
            tt.health_up.as_ref().map(|h| ("health-up", h.span())),
        ]
        .into_iter()
        .flatten()
        .next();
        if let Some((k, span)) = health_key {
            return Err(loc.at(
                span,
                format!("{key}.{k}"),
                "health settings are for remote processors (a local one has a heartbeat)",
            ));
        }
        if tt.addr.get_ref().ip().is_unspecified() || tt.addr.get_ref().port() == 0 {
            return Err(loc.at(
                tt.addr.span(),
                format!("{key}.addr"),
                "a local processor needs a concrete address and port to bind",
            ));
        }
    }
    for (k, v) in [
        ("health-fail", &tt.health_fail),
        ("health-ok", &tt.health_ok),
    ] {
        if let Some(v) = v {
            if *v.get_ref() == 0 {
                return Err(loc.at(v.span(), format!("{key}.{k}"), "must be at least 1"));
            }
            if k == "health-fail" {
                health.fail = *v.get_ref();
            } else {
                health.ok = *v.get_ref();
            }
        }
    }
    if let Some(up) = &tt.health_up {
        health.up = parse_codes(up.get_ref())
            .map_err(|m| loc.at(up.span(), format!("{key}.health-up"), m))?;
    }
    let entry = ProcessorEntry {
        id: *tt.id.get_ref(),
        kind,
        addr: *tt.addr.get_ref(),
        capacity: tt.capacity.unwrap_or(capacity),
        weight,
        health,
    };
    Ok((entry, Some(tt.id.span()), key))
}

/// Deserializes a clap value enum from its command-line name.
fn de_enum<'de, D: Deserializer<'de>, T: ValueEnum>(d: D) -> Result<Option<T>, D::Error> {
    let s = String::deserialize(d)?;
    T::from_str(&s, false).map(Some).map_err(|_| {
        let names: Vec<String> = T::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value().map(|p| p.get_name().to_owned()))
            .collect();
        serde::de::Error::custom(format!("{s:?}: expected one of {}", names.join(", ")))
    })
}

/// Deserializes a [`FromStr`] value from a string.
fn de_parse<'de, D: Deserializer<'de>, T>(d: D) -> Result<Option<T>, D::Error>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    let s = String::deserialize(d)?;
    s.parse()
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("{s:?}: {e}")))
}

/// Deserializes an array of [`FromStr`] values from strings.
fn de_list<'de, D: Deserializer<'de>, T>(d: D) -> Result<Vec<T>, D::Error>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| {
            s.parse()
                .map_err(|e| serde::de::Error::custom(format!("{s:?}: {e}")))
        })
        .collect()
}

fn ser_enum<S: Serializer, T: ValueEnum>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    let name = v.to_possible_value().map(|p| p.get_name().to_owned());
    s.serialize_str(name.as_deref().unwrap_or("?"))
}

fn ser_display<S: Serializer, T: fmt::Display>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn ser_list<S: Serializer, T: fmt::Display>(v: &[T], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(ToString::to_string))
}

#[cfg(test)]
mod tests;
