//! A two-namespace veth testbed: an "app" namespace (the application server / load generator)
//! and a "disp" namespace (where Switchyard runs), joined by one veth pair.
//!
//! ```text
//!  netns <name>-app                      netns <name>-disp
//!  <name>-a0  198.18.0.2/24   <--veth-->  <name>-d0  198.18.0.1/24
//!             2001:db8:5e::2/64                      2001:db8:5e::1/64
//! ```
//! 198.18.0.0/15 is the benchmarking range (RFC 2544) and 2001:db8::/32 the documentation
//! prefix: neither can collide with a real network, and neither leaves the namespaces.
//!
//! [`Testbed::up`] removes leftovers of the same name first; dropping an owned [`Testbed`]
//! deletes both namespaces (and with them the veth pair), also when a test panics.
use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use anyhow::{bail, Context as _};

/// Dispatcher-side IPv4 address.
pub const DISP_V4: &str = "198.18.0.1";
/// App-side IPv4 address.
pub const APP_V4: &str = "198.18.0.2";
/// Dispatcher-side IPv6 address.
pub const DISP_V6: &str = "2001:db8:5e::1";
/// App-side IPv6 address.
pub const APP_V6: &str = "2001:db8:5e::2";

/// A created testbed; deleted on drop when `owned`.
#[derive(Debug)]
pub struct Testbed {
    /// Name prefix (at most 9 characters so interface names fit IFNAMSIZ).
    pub name: String,
    /// Namespace of the application side.
    pub app_ns: String,
    /// Namespace of the dispatcher side.
    pub disp_ns: String,
    /// Veth end inside `app_ns`.
    pub app_if: String,
    /// Veth end inside `disp_ns` (attach XDP here).
    pub disp_if: String,
    owned: bool,
}

fn ip(args: &[&str]) -> anyhow::Result<Output> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running `ip` (iproute2 is required: apt-get install iproute2)")?;
    Ok(out)
}

fn ip_ok(args: &[&str]) -> anyhow::Result<()> {
    let out = ip(args)?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Testbed {
    /// Names for testbed `name` without creating anything.
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            app_ns: format!("{name}-app"),
            disp_ns: format!("{name}-disp"),
            app_if: format!("{name}-a0"),
            disp_if: format!("{name}-d0"),
            owned: false,
        }
    }

    /// Creates the namespaces, the veth pair and the addresses; needs root (CAP_NET_ADMIN).
    ///
    /// `rx_queues` sets the dispatcher-side veth's number of rx queues (1 is the veth default)
    /// and the app-side veth's number of tx queues to match.
    ///
    /// A veth hands a frame to the peer's rx queue numbered like the tx queue it was sent on
    /// (`veth_xmit`: rx queue = the skb's queue mapping). With one app-side tx queue (what
    /// veth sets up unless told otherwise, whatever its maximum) every datagram would land on
    /// rx queue 0; with `rx_queues` tx queues and no XPS configured (the veth default) the
    /// kernel picks the tx queue by the flow hash of (source ip, source port, destination ip,
    /// destination port) (`skb_tx_hash`), so a source keeps one queue whatever CPU sends.
    /// Setting `xps_cpus` on the app side would make it follow the sending CPU instead.
    pub fn up(name: &str, rx_queues: u32) -> anyhow::Result<Self> {
        if name.is_empty() || name.len() > 9 {
            bail!("testbed name must be 1..=9 characters (interface names are limited to 15)");
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            bail!("the testbed needs root (network namespaces and veth); run as root");
        }
        let mut tb = Self::named(name);
        tb.remove();
        tb.owned = true; // from here on, a failure cleans up what was made
        let q = rx_queues.max(1).to_string();
        ip_ok(&["netns", "add", &tb.app_ns])?;
        ip_ok(&["netns", "add", &tb.disp_ns])?;
        ip_ok(&[
            "link",
            "add",
            &tb.app_if,
            "netns",
            &tb.app_ns,
            "numrxqueues",
            "1",
            "numtxqueues",
            &q,
            "type",
            "veth",
            "peer",
            "name",
            &tb.disp_if,
            "netns",
            &tb.disp_ns,
            "numrxqueues",
            &q,
        ])?;
        for (ns, ifname, v4, v6) in [
            (&tb.app_ns, &tb.app_if, APP_V4, APP_V6),
            (&tb.disp_ns, &tb.disp_if, DISP_V4, DISP_V6),
        ] {
            ip_ok(&["-n", ns, "link", "set", "lo", "up"])?;
            ip_ok(&["-n", ns, "addr", "add", &format!("{v4}/24"), "dev", ifname])?;
            ip_ok(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                ifname,
                "nodad",
            ])?;
            ip_ok(&["-n", ns, "link", "set", ifname, "up"])?;
        }
        Ok(tb)
    }

    /// Deletes the namespaces (and so the veth pair); ignores what does not exist.
    pub fn remove(&self) {
        for ns in [&self.app_ns, &self.disp_ns] {
            let _ = ip(&["netns", "del", ns]);
        }
    }

    /// Whether both namespaces exist.
    pub fn exists(&self) -> bool {
        ip(&["netns", "list"])
            .map(|o| {
                let s = String::from_utf8_lossy(&o.stdout);
                [&self.app_ns, &self.disp_ns].iter().all(|ns| {
                    s.lines()
                        .any(|l| l.split_whitespace().next() == Some(ns.as_str()))
                })
            })
            .unwrap_or(false)
    }

    /// Keeps the namespaces after drop (for `cargo xtask testbed up`).
    pub fn keep(mut self) -> Self {
        self.owned = false;
        self
    }

    /// A command that runs `program` inside namespace `ns` (`ip netns exec`; the PID of the
    /// spawned child is the program's own, so it can be signalled directly).
    pub fn exec(ns: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, program]);
        c
    }

    /// `ip -d link show` of the dispatcher-side interface (shows an attached XDP program).
    pub fn disp_link_details(&self) -> anyhow::Result<String> {
        let out = ip(&[
            "-n",
            &self.disp_ns,
            "-d",
            "link",
            "show",
            "dev",
            &self.disp_if,
        ])?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        if self.owned {
            self.remove();
        }
    }
}

/// Runs `f` on a thread that has entered network namespace `ns`; sockets created inside `f`
/// belong to that namespace and may be used from any thread afterwards.
///
/// Lets tests and the sender use ordinary `std::net` sockets on the app side of the testbed
/// without spawning helper processes.
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    use std::os::fd::AsRawFd;
    let path = format!("/run/netns/{ns}");
    let file = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
    std::thread::spawn(move || {
        // SAFETY: valid namespace fd; setns only affects this thread.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(anyhow::anyhow!(
                "setns into {path}: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(f())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("thread in netns panicked"))?
}

/// Processor host addresses on the LAN testbed.
pub const PROC_V4: [&str; 2] = ["198.18.0.11", "198.18.0.12"];

/// The "several hosts" testbed: application server, dispatcher and two processor hosts, each
/// a namespace, on one bridge (itself in its own namespace).
///
/// ```text
///  <name>-app  198.18.0.2  ─┐
///  <name>-disp 198.18.0.1  ─┤  bridge br0 in <name>-br
///  <name>-p1   198.18.0.11 ─┤
///  <name>-p2   198.18.0.12 ─┘
/// ```
/// Interfaces inside each host namespace are called `eth0`; the dispatcher attaches XDP there.
/// Dropping an owned value deletes every namespace (and with them all veths and the bridge).
#[derive(Debug)]
pub struct LanTestbed {
    /// Name prefix.
    pub name: String,
    /// Application server namespace.
    pub app_ns: String,
    /// Dispatcher namespace.
    pub disp_ns: String,
    /// Processor host namespaces.
    pub proc_ns: [String; 2],
    br_ns: String,
    owned: bool,
}

impl LanTestbed {
    /// Names for LAN testbed `name` without creating anything.
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            app_ns: format!("{name}-app"),
            disp_ns: format!("{name}-disp"),
            proc_ns: [format!("{name}-p1"), format!("{name}-p2")],
            br_ns: format!("{name}-br"),
            owned: false,
        }
    }

    fn all_ns(&self) -> [&String; 5] {
        [
            &self.app_ns,
            &self.disp_ns,
            &self.proc_ns[0],
            &self.proc_ns[1],
            &self.br_ns,
        ]
    }

    /// Creates it; needs root.
    pub fn up(name: &str) -> anyhow::Result<Self> {
        if name.is_empty() || name.len() > 9 {
            bail!("testbed name must be 1..=9 characters");
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            bail!("the testbed needs root (network namespaces and veth); run as root");
        }
        let mut tb = Self::named(name);
        tb.remove();
        tb.owned = true;
        for ns in tb.all_ns() {
            ip_ok(&["netns", "add", ns])?;
            ip_ok(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        ip_ok(&["-n", &tb.br_ns, "link", "add", "br0", "type", "bridge"])?;
        ip_ok(&["-n", &tb.br_ns, "link", "set", "br0", "up"])?;
        let hosts = [
            (&tb.app_ns, "a", APP_V4),
            (&tb.disp_ns, "d", DISP_V4),
            (&tb.proc_ns[0], "1", PROC_V4[0]),
            (&tb.proc_ns[1], "2", PROC_V4[1]),
        ];
        for (ns, tag, v4) in hosts {
            let br_end = format!("{name}-b{tag}");
            ip_ok(&[
                "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", &br_end,
                "netns", &tb.br_ns,
            ])?;
            ip_ok(&["-n", &tb.br_ns, "link", "set", &br_end, "master", "br0"])?;
            ip_ok(&["-n", &tb.br_ns, "link", "set", &br_end, "up"])?;
            ip_ok(&["-n", ns, "addr", "add", &format!("{v4}/24"), "dev", "eth0"])?;
            ip_ok(&["-n", ns, "link", "set", "eth0", "up"])?;
        }
        Ok(tb)
    }

    /// Deletes every namespace; ignores what does not exist.
    pub fn remove(&self) {
        for ns in self.all_ns() {
            let _ = ip(&["netns", "del", ns]);
        }
    }

    /// Whether any of its namespaces exists.
    pub fn any_exists(&self) -> bool {
        ip(&["netns", "list"])
            .map(|o| {
                let s = String::from_utf8_lossy(&o.stdout);
                self.all_ns().iter().any(|ns| {
                    s.lines()
                        .any(|l| l.split_whitespace().next() == Some(ns.as_str()))
                })
            })
            .unwrap_or(false)
    }

    /// Keeps the namespaces after drop.
    pub fn keep(mut self) -> Self {
        self.owned = false;
        self
    }

    /// A command running `program` inside namespace `ns` (see [`Testbed::exec`]).
    pub fn exec_in(ns: &str, program: &str) -> Command {
        Testbed::exec(ns, program)
    }

    /// `ip -d link show eth0` in the dispatcher namespace.
    pub fn disp_link_details(&self) -> anyhow::Result<String> {
        let out = ip(&["-n", &self.disp_ns, "-d", "link", "show", "dev", "eth0"])?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for LanTestbed {
    fn drop(&mut self) {
        if self.owned {
            self.remove();
        }
    }
}

/// Panics (fails the test loudly) unless running as root: the tests that call it need netns,
/// veth and BPF, and a root test must never pass by skipping.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("this test needs root (network namespaces, veth, XDP, AF_XDP); run `cargo xtask test` as root");
    }
}

/// A testbed name unique to this process and `tag` (keep `tag` ≤ 4 chars: names are ≤ 9).
pub fn unique_name(tag: &str) -> String {
    format!("{tag}{}", std::process::id() % 100_000)
}

/// The anycast service address every dispatcher of the [`AnycastTestbed`] serves (on `lo`).
pub const ANYCAST_V4: &str = "198.18.100.1";
/// Router address on the app side.
pub const ANYCAST_ROUTER_APP_V4: &str = "198.18.1.1";
/// Router address on the dispatcher/processor LAN (its BGP speaker).
pub const ANYCAST_ROUTER_V4: &str = "198.18.0.254";
/// Dispatcher host addresses (BGP speakers, report listeners) on the LAN.
pub const ANYCAST_DISP_V4: [&str; 2] = ["198.18.0.1", "198.18.0.2"];
/// App namespace source addresses (the first is its primary), so ECMP spreads flows.
pub const ANYCAST_APP_V4: [&str; 4] = ["198.18.1.2", "198.18.1.3", "198.18.1.4", "198.18.1.5"];

/// BIRD 2 config of a dispatcher host (announces the anycast address while enabled).
pub const BIRD_DISPATCHER_CONF: &str = include_str!("../../packaging/anycast/bird-dispatcher.conf");
/// BIRD 2 config of the router (ECMP over the dispatchers).
pub const BIRD_ROUTER_CONF: &str = include_str!("../../packaging/anycast/bird-router.conf");
/// The watcher that ties the announcement to `switchyard ctl health`.
pub const ANNOUNCE_SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../packaging/anycast/switchyard-announce.sh"
);

/// `conf` with the value of each `define NAME = ...;` in `defines` replaced and the syslog
/// line pointed at `log` (namespaces have no syslog).
pub fn bird_conf(conf: &str, defines: &[(&str, &str)], log: &Path) -> String {
    conf.lines()
        .map(|l| {
            for (name, value) in defines {
                if l.starts_with(&format!("define {name} =")) {
                    return format!("define {name} = {value};");
                }
            }
            if l.trim() == "log syslog all;" {
                return format!("log \"{}\" all;", log.display());
            }
            l.to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// Several dispatchers behind ECMP: an app namespace, a router running BIRD 2 with ECMP over
/// BGP-learnt routes, two dispatcher hosts that each carry the anycast address on `lo` and
/// announce it with their own BIRD (toggled by `switchyard-announce.sh` from
/// `switchyard ctl health`), and two processor hosts.
///
/// ```text
///  <name>-app  eth0 198.18.1.2-5/24 ──── <name>-rt eth0 198.18.1.1/24  (BIRD, ECMP,
///                                         │        br0  198.18.0.254/24  hash policy 1)
///          ┌──────────────┬───────────────┼──────────────┐
///  <name>-d1 198.18.0.1  <name>-d2 198.18.0.2  <name>-p1 .11   <name>-p2 .12
///  lo 198.18.100.1/32    lo 198.18.100.1/32
///  BIRD AS 65001         BIRD AS 65001
/// ```
/// Everything else (BIRD configs, control sockets, logs) lives in [`AnycastTestbed::dir`].
/// Dropping an owned value stops the daemons and watchers it started and deletes every
/// namespace and the directory, also when a test panics or `up` fails half-way.
#[derive(Debug)]
pub struct AnycastTestbed {
    /// Name prefix.
    pub name: String,
    /// Application (load generator) namespace.
    pub app_ns: String,
    /// Router namespace.
    pub router_ns: String,
    /// Dispatcher host namespaces.
    pub disp_ns: [String; 2],
    /// Processor host namespaces.
    pub proc_ns: [String; 2],
    /// State directory: BIRD configs/sockets/logs, dispatcher control sockets, pid files.
    pub dir: PathBuf,
    owned: bool,
}

impl AnycastTestbed {
    /// Names for anycast testbed `name` without creating anything.
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            app_ns: format!("{name}-app"),
            router_ns: format!("{name}-rt"),
            disp_ns: [format!("{name}-d1"), format!("{name}-d2")],
            proc_ns: [format!("{name}-p1"), format!("{name}-p2")],
            dir: std::env::temp_dir().join(format!("switchyard-anycast-{name}")),
            owned: false,
        }
    }

    fn all_ns(&self) -> [&String; 6] {
        [
            &self.app_ns,
            &self.router_ns,
            &self.disp_ns[0],
            &self.disp_ns[1],
            &self.proc_ns[0],
            &self.proc_ns[1],
        ]
    }

    /// The control socket dispatcher `k` (0 or 1) must be started with (`--ctl-socket`): the
    /// watcher checks its health there.
    pub fn ctl_socket(&self, k: usize) -> PathBuf {
        self.dir.join(format!("d{}-ctl.sock", k + 1))
    }

    /// BIRD control socket of dispatcher host `k`, or of the router with `None`.
    pub fn bird_socket(&self, k: Option<usize>) -> PathBuf {
        match k {
            Some(k) => self.dir.join(format!("bird-d{}.ctl", k + 1)),
            None => self.dir.join("bird-rt.ctl"),
        }
    }

    /// Creates it and starts the three BIRDs and the two watchers; needs root and BIRD 2.
    /// `switchyard` is the binary the watchers run `ctl health` with.
    pub fn up(name: &str, switchyard: &Path) -> anyhow::Result<Self> {
        if name.is_empty() || name.len() > 9 {
            bail!("testbed name must be 1..=9 characters");
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            bail!("the testbed needs root (network namespaces and veth); run as root");
        }
        for (prog, pkg) in [
            ("bird", "bird2"),
            ("birdc", "bird2"),
            ("timeout", "coreutils"),
        ] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {prog}")])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if !found {
                bail!("`{prog}` is required (Debian {pkg}): run `cargo xtask setup`");
            }
        }
        let mut tb = Self::named(name);
        tb.remove();
        tb.owned = true; // from here on, a failure cleans up what was made
        std::fs::create_dir_all(&tb.dir).with_context(|| format!("creating {:?}", tb.dir))?;
        for ns in tb.all_ns() {
            ip_ok(&["netns", "add", ns])?;
            ip_ok(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        let rt = tb.router_ns.clone();
        // App side: one veth to the router.
        ip_ok(&[
            "link", "add", "eth0", "netns", &tb.app_ns, "type", "veth", "peer", "name", "eth0",
            "netns", &rt,
        ])?;
        for (i, a) in ANYCAST_APP_V4.iter().enumerate() {
            let mut args = vec!["-n", &tb.app_ns, "addr", "add"];
            let cidr = format!("{a}/24");
            args.extend([cidr.as_str(), "dev", "eth0"]);
            if i > 0 {
                args.push("secondary");
            }
            ip_ok(&args)?;
        }
        ip_ok(&["-n", &tb.app_ns, "link", "set", "eth0", "up"])?;
        ip_ok(&[
            "-n",
            &tb.app_ns,
            "route",
            "add",
            "default",
            "via",
            ANYCAST_ROUTER_APP_V4,
        ])?;
        ip_ok(&[
            "-n",
            &rt,
            "addr",
            "add",
            &format!("{ANYCAST_ROUTER_APP_V4}/24"),
            "dev",
            "eth0",
        ])?;
        ip_ok(&["-n", &rt, "link", "set", "eth0", "up"])?;
        // The LAN: a bridge in the router namespace, the router on it as .254.
        ip_ok(&["-n", &rt, "link", "add", "br0", "type", "bridge"])?;
        ip_ok(&[
            "-n",
            &rt,
            "addr",
            "add",
            &format!("{ANYCAST_ROUTER_V4}/24"),
            "dev",
            "br0",
        ])?;
        ip_ok(&["-n", &rt, "link", "set", "br0", "up"])?;
        let hosts = [
            (&tb.disp_ns[0], "d1", ANYCAST_DISP_V4[0]),
            (&tb.disp_ns[1], "d2", ANYCAST_DISP_V4[1]),
            (&tb.proc_ns[0], "p1", PROC_V4[0]),
            (&tb.proc_ns[1], "p2", PROC_V4[1]),
        ];
        for (ns, tag, v4) in hosts {
            let br_end = format!("b-{tag}");
            ip_ok(&[
                "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", &br_end,
                "netns", &rt,
            ])?;
            ip_ok(&["-n", &rt, "link", "set", &br_end, "master", "br0"])?;
            ip_ok(&["-n", &rt, "link", "set", &br_end, "up"])?;
            ip_ok(&["-n", ns, "addr", "add", &format!("{v4}/24"), "dev", "eth0"])?;
            ip_ok(&["-n", ns, "link", "set", "eth0", "up"])?;
            ip_ok(&[
                "-n",
                ns,
                "route",
                "add",
                "default",
                "via",
                ANYCAST_ROUTER_V4,
            ])?;
        }
        for ns in &tb.disp_ns {
            ip_ok(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{ANYCAST_V4}/32"),
                "dev",
                "lo",
            ])?;
        }
        sysctl(&rt, "net.ipv4.ip_forward", "1")?;
        sysctl(&rt, "net.ipv4.fib_multipath_hash_policy", "1")?;

        // BIRD: the router, then one per dispatcher host.
        let dir = tb.dir.clone();
        let rt_conf = bird_conf(BIRD_ROUTER_CONF, &[], &dir.join("bird-rt.log"));
        tb.start_bird(&rt, "rt", &rt_conf, &tb.bird_socket(None))?;
        for (k, addr) in ANYCAST_DISP_V4.iter().enumerate() {
            let conf = bird_conf(
                BIRD_DISPATCHER_CONF,
                &[
                    ("ANYCAST", &format!("{ANYCAST_V4}/32")),
                    ("LOCAL_ADDR", addr),
                    ("ROUTER_ADDR", ANYCAST_ROUTER_V4),
                ],
                &dir.join(format!("bird-d{}.log", k + 1)),
            );
            let ns = tb.disp_ns[k].clone();
            tb.start_bird(&ns, &format!("d{}", k + 1), &conf, &tb.bird_socket(Some(k)))?;
        }
        for k in 0..2 {
            let log = std::fs::File::create(dir.join(format!("announce-d{}.log", k + 1)))?;
            let child = Command::new("sh")
                .arg(ANNOUNCE_SCRIPT)
                .env("SWITCHYARD_CTL_SOCKET", tb.ctl_socket(k))
                .env("BIRD_SOCKET", tb.bird_socket(Some(k)))
                .env("SWITCHYARD", switchyard)
                .stdin(std::process::Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("starting switchyard-announce.sh")?;
            std::fs::write(
                dir.join(format!("announce-d{}.pid", k + 1)),
                child.id().to_string(),
            )?;
        }
        Ok(tb)
    }

    fn start_bird(&self, ns: &str, tag: &str, conf: &str, sock: &Path) -> anyhow::Result<()> {
        let conf_path = self.dir.join(format!("bird-{tag}.conf"));
        std::fs::write(&conf_path, conf)?;
        let pid = self.dir.join(format!("bird-{tag}.pid"));
        // BIRD forks into the background once the config is loaded and writes its pid file.
        let out = Testbed::exec(ns, "bird")
            .arg("-c")
            .arg(&conf_path)
            .arg("-s")
            .arg(sock)
            .arg("-P")
            .arg(&pid)
            .output()
            .context("starting bird (Debian bird2)")?;
        if !out.status.success() {
            bail!(
                "bird in {ns} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        // The pid file (what `remove` stops it by) and the control socket appear just after
        // the fork.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !(pid.exists() && sock.exists()) {
            if std::time::Instant::now() > deadline {
                bail!("bird in {ns} wrote no pid file / control socket within 5 s");
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Ok(())
    }

    /// The next hops the router's kernel has for the anycast address (empty: not routed).
    pub fn anycast_next_hops(&self) -> Vec<String> {
        let out = ip(&["-n", &self.router_ns, "route", "show", ANYCAST_V4]);
        let Ok(out) = out else { return Vec::new() };
        let text = String::from_utf8_lossy(&out.stdout);
        let words: Vec<&str> = text.split_whitespace().collect();
        let mut hops: Vec<String> = words
            .windows(2)
            .filter(|w| w[0] == "via")
            .map(|w| w[1].to_owned())
            .collect();
        hops.sort();
        hops
    }

    /// Stops what `up` started (from the pid files), deletes every namespace and the state
    /// directory; ignores what does not exist.
    pub fn remove(&self) {
        for tag in [
            "announce-d1",
            "announce-d2",
            "bird-d1",
            "bird-d2",
            "bird-rt",
        ] {
            let f = self.dir.join(format!("{tag}.pid"));
            if let Some(pid) = std::fs::read_to_string(&f)
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
                .filter(|&p| p > 1)
            {
                // SAFETY: a process this testbed started (its pid file, in our own directory).
                unsafe { libc::kill(pid, libc::SIGTERM) };
                // Reap it if it is our child (the watchers); BIRD daemonized itself.
                let mut st = 0;
                // SAFETY: non-blocking waitpid on a pid we started.
                for _ in 0..50 {
                    if unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) } > 0
                        // SAFETY: signal 0 only probes for existence.
                        || unsafe { libc::kill(pid, 0) } != 0
                    {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            }
        }
        for ns in self.all_ns() {
            let _ = ip(&["netns", "del", ns]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// Keeps everything after drop (for `cargo xtask testbed up --anycast`).
    pub fn keep(mut self) -> Self {
        self.owned = false;
        self
    }

    /// A command running `program` inside namespace `ns` (see [`Testbed::exec`]).
    pub fn exec_in(ns: &str, program: &str) -> Command {
        Testbed::exec(ns, program)
    }
}

impl Drop for AnycastTestbed {
    fn drop(&mut self) {
        if self.owned {
            self.remove();
        }
    }
}

fn sysctl(ns: &str, key: &str, value: &str) -> anyhow::Result<()> {
    let out = Testbed::exec(ns, "sysctl")
        .args(["-qw", &format!("{key}={value}")])
        .output()
        .context("running sysctl")?;
    if !out.status.success() {
        bail!(
            "sysctl {key}={value} in {ns}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bird_conf_substitutes_defines_and_log() {
        let conf = bird_conf(
            BIRD_DISPATCHER_CONF,
            &[("LOCAL_ADDR", "198.18.0.2"), ("ANYCAST", "192.0.2.1/32")],
            Path::new("/tmp/x.log"),
        );
        assert!(
            conf.contains("\ndefine LOCAL_ADDR = 198.18.0.2;\n"),
            "{conf}"
        );
        assert!(
            conf.contains("\ndefine ANYCAST = 192.0.2.1/32;\n"),
            "{conf}"
        );
        assert!(
            conf.contains("\ndefine ROUTER_AS = 65000;"),
            "untouched: {conf}"
        );
        assert!(conf.contains("\nlog \"/tmp/x.log\" all;\n"), "{conf}");
        assert!(!conf.contains("syslog"));
        // The protocol the health loop toggles starts disabled.
        assert!(conf.contains("protocol static switchyard_anycast {\n    disabled;"));
        assert!(ANNOUNCE_SCRIPT.ends_with("switchyard-announce.sh"));
        assert!(Path::new(ANNOUNCE_SCRIPT).exists());
    }

    /// The packaging configs as the testbed writes them parse (`bird -p`), and the health loop
    /// is valid sh (`sh -n`).
    #[test]
    #[ignore = "needs BIRD 2 (Debian bird2): run `cargo xtask test`"]
    fn packaging_configs_parse() {
        let dir = std::env::temp_dir().join(format!("sy-bird-parse-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, conf) in [("rt", BIRD_ROUTER_CONF), ("d", BIRD_DISPATCHER_CONF)] {
            let f = dir.join(format!("{name}.conf"));
            std::fs::write(&f, bird_conf(conf, &[], &dir.join("log"))).unwrap();
            let out = Command::new("bird")
                .arg("-p")
                .arg("-c")
                .arg(&f)
                .output()
                .expect("bird is required (Debian bird2): run `cargo xtask setup`");
            assert!(
                out.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let st = Command::new("sh")
            .args(["-n", ANNOUNCE_SCRIPT])
            .status()
            .unwrap();
        assert!(st.success());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
