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
use std::process::{Command, Output};

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
    /// `rx_queues` sets the dispatcher-side veth's number of rx queues (1 is the veth default).
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
