//! Builds the XDP program (`dispatcher-ebpf`) for `bpfel-unknown-none` and leaves the object in
//! `OUT_DIR` for `include_bytes_aligned!`.
//!
//! Plain `cargo build`/`cargo test` must keep working on a machine that has only stable Rust, so
//! a missing eBPF toolchain is a warning plus an empty placeholder object; the binary then fails
//! at load time with a message that says to run `cargo xtask setup`. `SWITCHYARD_REQUIRE_EBPF=1`
//! (set by `cargo xtask`) turns the warning into a build error, so CI can never ship an XDP-less
//! binary by accident.
//!
//! Why not `aya_build::build_ebpf`: it forwards every line of the inner cargo's output as a
//! `cargo:warning`, so every build of the workspace printed a screenful of "warnings" that were
//! progress lines. This runs the same inner build (nightly via rustup, `-Z build-std=core`, BTF,
//! its own target directory under `OUT_DIR` so cargo does not lock itself) and prints its output
//! only when it fails — worded as what to do.
use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{anyhow, bail, Context as _};

/// The toolchain the eBPF crate is built with (the one `cargo xtask setup` installs).
const TOOLCHAIN: &str = "nightly";
const TARGET: &str = "bpfel-unknown-none";
const PACKAGE: &str = "dispatcher-ebpf";

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=SWITCHYARD_REQUIRE_EBPF");
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or_else(|| anyhow!("OUT_DIR unset"))?);
    let object = out_dir.join(PACKAGE);
    let required = env::var("SWITCHYARD_REQUIRE_EBPF").is_ok_and(|v| v == "1");

    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let root = manifest_dir
        .parent()
        .context("xdp-io has no parent directory")?;
    for dir in [
        "dispatcher-ebpf/src",
        "dispatcher-ebpf/Cargo.toml",
        "dispatcher-common/src",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }

    let skip = env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v == "true");
    let result = if skip {
        Err(anyhow!("AYA_BUILD_SKIP is set"))
    } else {
        build(root, &out_dir, &object)
    };
    match result {
        Ok(()) => Ok(()),
        Err(err) if required => Err(err.context(
            "building the XDP program failed; run `cargo xtask setup` (it installs nightly rust-src and bpf-linker), then build again",
        )),
        Err(err) => {
            println!(
                "cargo:warning=the XDP program was not built, so `--backend xdp` will refuse to start: run `cargo xtask setup`, then build again ({err:#})"
            );
            fs::write(&object, b"").context("writing placeholder eBPF object")?;
            Ok(())
        }
    }
}

/// The inner build; its output is kept for the error message.
fn build(root: &Path, out_dir: &Path, object: &Path) -> anyhow::Result<()> {
    let target_dir = out_dir.join("ebpf-target");
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into());
    let arch_cfg = format!("--cfg=bpf_target_arch=\"{arch}\"");
    let mut cmd = Command::new("rustup");
    cmd.args(["run", TOOLCHAIN, "cargo", "build", "--package", PACKAGE])
        .args(["--bins", "--release", "--target", TARGET])
        .args(["-Z", "build-std=core"])
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(root)
        // The outer cargo's compiler and flags are for the host; the inner build picks its own.
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTFLAGS")
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            [arch_cfg.as_str(), "-Cdebuginfo=2", "-Clink-arg=--btf"].join("\x1f"),
        );
    let out = cmd
        .output()
        .with_context(|| format!("running {cmd:?} (is rustup installed?)"))?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        for line in tail.iter().rev() {
            println!("cargo:warning={line}");
        }
        bail!("{PACKAGE} did not build ({})", out.status);
    }
    let built = target_dir.join(TARGET).join("release").join(PACKAGE);
    fs::copy(&built, object)
        .with_context(|| format!("copying {} to {}", built.display(), object.display()))?;
    Ok(())
}
