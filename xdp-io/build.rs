//! Builds the XDP program (`dispatcher-ebpf`) for `bpfel-unknown-none` and leaves the object in
//! `OUT_DIR` for `include_bytes_aligned!`.
//!
//! Plain `cargo build`/`cargo test` must keep working on a machine that has only stable Rust, so
//! a missing eBPF toolchain is a warning plus an empty placeholder object; the binary then fails
//! at load time with a message that says to run `cargo xtask setup`. `SWITCHYARD_REQUIRE_EBPF=1`
//! (set by `cargo xtask`) turns the warning into a build error, so CI can never ship an XDP-less
//! binary by accident.
use std::{env, fs, path::PathBuf};

use anyhow::{anyhow, Context as _};

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=SWITCHYARD_REQUIRE_EBPF");
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or_else(|| anyhow!("OUT_DIR unset"))?);
    let object = out_dir.join("dispatcher-ebpf");
    let required = env::var("SWITCHYARD_REQUIRE_EBPF").is_ok_and(|v| v == "1");

    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let ebpf_dir = manifest_dir
        .parent()
        .context("xdp-io has no parent directory")?
        .join("dispatcher-ebpf");
    let ebpf_dir_str = ebpf_dir
        .to_str()
        .context("dispatcher-ebpf path is not UTF-8")?;
    println!("cargo:rerun-if-changed={}", ebpf_dir.join("src").display());
    println!(
        "cargo:rerun-if-changed={}",
        manifest_dir.join("../dispatcher-common/src").display()
    );

    let skip = env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v == "true");
    let result = if skip {
        Err(anyhow!("AYA_BUILD_SKIP is set"))
    } else {
        let package = aya_build::Package {
            name: "dispatcher-ebpf",
            root_dir: ebpf_dir_str,
            ..Default::default()
        };
        aya_build::build_ebpf([package], aya_build::Toolchain::default())
    };
    match result {
        Ok(()) if object.exists() => Ok(()),
        Ok(()) => placeholder_or_fail(&object, required, anyhow!("no object was produced")),
        Err(err) => placeholder_or_fail(&object, required, err),
    }
}

/// Writes an empty object so the crate still compiles, or fails when the object is required.
fn placeholder_or_fail(object: &PathBuf, required: bool, err: anyhow::Error) -> anyhow::Result<()> {
    if required {
        return Err(err.context(
            "building the XDP program failed; run `cargo xtask setup` to install nightly rust-src and bpf-linker",
        ));
    }
    println!(
        "cargo:warning=XDP program not built ({err:#}); the xdp backend will refuse to start. Run `cargo xtask setup`."
    );
    fs::write(object, b"").context("writing placeholder eBPF object")?;
    Ok(())
}
