//! Installs what a fresh machine lacks to build and test Switchyard: nightly `rust-src` (for the
//! eBPF target), `bpf-linker` built against nightly's own LLVM, and the Debian packages the
//! tests use. Idempotent: each step checks first and says what it does.
use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _};

/// The nightly toolchain the eBPF crate is built with (aya-build runs `rustup run nightly`).
pub const NIGHTLY: &str = "nightly";
/// bpf-linker version that links with these aya pins; see README "Build".
pub const BPF_LINKER_VERSION: &str = "0.13.0";
/// Debian packages the test suite needs, with the program each provides.
pub const APT_PACKAGES: &[(&str, &str)] = &[
    ("iproute2", "ip"),
    // SIPp, the real SIP peer the end-to-end tests drive Switchyard with.
    ("sip-tester", "sipp"),
    // tshark decodes the captures the tests take (SIP/MGCP on the wire, which port got what).
    ("tshark", "tshark"),
    // promtool (from the Prometheus server package; only promtool is used) checks that what
    // `/metrics` serves is valid exposition text.
    ("prometheus", "promtool"),
    // The package test: `systemd-analyze verify` of the units (it needs no systemd as PID 1),
    // the service user (postinst), the binaries' dependencies and stripping, and running the
    // installed binary with exactly the unit's capabilities (setpriv, prlimit).
    ("systemd", "systemd-analyze"),
    ("adduser", "adduser"),
    ("binutils", "objdump"),
    ("util-linux", "setpriv"),
    // BIRD 2, the BGP daemon of the anycast testbed (router with ECMP, one per dispatcher
    // host announcing the service address; see packaging/anycast/).
    ("bird2", "bird"),
    // Kamailio 5.6, the peer `cargo xtask bench` runs beside Switchyard (its dispatcher
    // module in front of the same processors); an external program, not linked.
    ("kamailio", "kamailio"),
];

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program} >/dev/null 2>&1")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("spawning {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("spawning {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Where `cargo install` puts binaries (and so where bpf-linker goes).
pub fn cargo_home() -> PathBuf {
    env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
}

/// Makes sure `$CARGO_HOME/bin` is on PATH for child processes (bpf-linker is found via PATH).
pub fn export_path() {
    let bin = cargo_home().join("bin");
    let path = env::var_os("PATH").unwrap_or_default();
    if !env::split_paths(&path).any(|p| p == bin) {
        let mut parts = vec![bin];
        parts.extend(env::split_paths(&path));
        if let Ok(joined) = env::join_paths(parts) {
            env::set_var("PATH", joined);
        }
    }
}

/// Runs every setup step.
pub fn all(with_apt: bool) -> anyhow::Result<()> {
    export_path();
    nightly_rust_src()?;
    bpf_linker()?;
    if with_apt {
        apt_packages(APT_PACKAGES)?;
    }
    Ok(())
}

/// Ensures the nightly toolchain and its `rust-src` component.
pub fn nightly_rust_src() -> anyhow::Result<()> {
    if !have("rustup") {
        bail!("rustup is required (the eBPF program is built with a nightly toolchain via rustup)");
    }
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"]))?;
    if !toolchains.lines().any(|l| l.starts_with(NIGHTLY)) {
        eprintln!("setup: installing the {NIGHTLY} toolchain (minimal profile)");
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            NIGHTLY,
            "--profile",
            "minimal",
        ]))?;
    }
    let comps = output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        NIGHTLY,
    ]))?;
    if comps.lines().any(|l| l.starts_with("rust-src")) {
        eprintln!("setup: {NIGHTLY} rust-src present");
    } else {
        eprintln!(
            "setup: installing rust-src for {NIGHTLY} (needed for -Z build-std=core, ~80 MB)"
        );
        run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", NIGHTLY]))?;
    }
    Ok(())
}

/// The nightly toolchain's LLVM shared library (`libLLVM.so.<major>.<minor>-rust-...`).
fn nightly_libllvm() -> anyhow::Result<(PathBuf, u32)> {
    let sysroot = output(
        Command::new("rustc")
            .arg(format!("+{NIGHTLY}"))
            .args(["--print", "sysroot"]),
    )?;
    let lib = Path::new(sysroot.trim()).join("lib");
    for e in std::fs::read_dir(&lib).with_context(|| format!("reading {}", lib.display()))? {
        let name = e?.file_name().to_string_lossy().into_owned();
        if let Some(rest) = name.strip_prefix("libLLVM.so.") {
            if name.contains("-rust-") {
                let major: u32 = rest
                    .split(['.', '-'])
                    .next()
                    .and_then(|m| m.parse().ok())
                    .with_context(|| format!("cannot read the LLVM version from {name}"))?;
                return Ok((lib.join(&name), major));
            }
        }
    }
    bail!(
        "no libLLVM.so.*-rust-* in {}: is the nightly toolchain complete?",
        lib.display()
    )
}

fn bpf_linker_works() -> bool {
    Command::new("bpf-linker")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Ensures a working `bpf-linker`, building it against nightly's own libLLVM when missing.
///
/// A plain `cargo install bpf-linker` fails here: it links the first `llvm-config` on PATH
/// (Debian's LLVM 14) and wants a newer LLVM. Pointing `LLVM_PREFIX` at a directory whose
/// `lib/libLLVM.so` is nightly's own library, with the matching `llvm-NN` feature, works with
/// crates.io alone.
pub fn bpf_linker() -> anyhow::Result<()> {
    if bpf_linker_works() {
        eprintln!("setup: bpf-linker present");
        return Ok(());
    }
    let (lib, major) = nightly_libllvm()?;
    let prefix = cargo_home().join("switchyard-llvm-prefix");
    let libdir = prefix.join("lib");
    std::fs::create_dir_all(&libdir)?;
    for link in [
        libdir.join("libLLVM.so"),
        libdir.join(lib.file_name().unwrap_or_default()),
    ] {
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&lib, &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    eprintln!(
        "setup: building bpf-linker {BPF_LINKER_VERSION} against nightly's LLVM {major} ({}); ~2 min on 2 cores",
        lib.display()
    );
    run(Command::new("cargo")
        .args([
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--locked",
            "--no-default-features",
            "--features",
            &format!("llvm-{major}"),
        ])
        .env("LLVM_PREFIX", &prefix))?;
    if !bpf_linker_works() {
        bail!(
            "bpf-linker was installed but does not run; check {}",
            cargo_home().join("bin").display()
        );
    }
    Ok(())
}

/// cargo-fuzz version used for the fuzz smoke run.
pub const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Ensures `cargo fuzz` (for the bounded fuzz smoke run of the wire scanners).
pub fn cargo_fuzz() -> anyhow::Result<()> {
    let ok = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if ok {
        eprintln!("setup: cargo-fuzz present");
        return Ok(());
    }
    eprintln!("setup: installing cargo-fuzz {CARGO_FUZZ_VERSION} (~1 min)");
    run(Command::new("cargo").args([
        "install",
        "cargo-fuzz",
        "--version",
        CARGO_FUZZ_VERSION,
        "--locked",
    ]))
}

/// Installs missing Debian packages (`(package, program)` pairs; a present program skips it).
pub fn apt_packages(pkgs: &[(&str, &str)]) -> anyhow::Result<()> {
    let missing: Vec<&str> = pkgs
        .iter()
        .filter(|(_, prog)| !have(prog))
        .map(|(pkg, _)| *pkg)
        .collect();
    if missing.is_empty() {
        eprintln!("setup: Debian packages present");
        return Ok(());
    }
    if !have("apt-get") {
        bail!("missing programs from packages {missing:?} and no apt-get to install them");
    }
    eprintln!("setup: installing Debian packages {missing:?}");
    run(Command::new("apt-get").arg("update").arg("-q"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    Ok(())
}
