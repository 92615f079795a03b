//! `cargo xtask package`: the release binaries and a Debian package of them.
//!
//! The `.deb` is assembled from a staged tree with `dpkg-deb --build --root-owner-group` rather
//! than with `cargo-deb`: `dpkg-deb` is Debian's own tool and is already on every Debian/Ubuntu
//! host (nothing extra to install or pin, no crate metadata to keep in step), every file of the
//! package is visible in `packaging/` and in this module, and the same binaries and sources give
//! the same archive (file modes are set here, ownership is root:root, and timestamps are clamped to
//! `SOURCE_DATE_EPOCH`, the last commit's time).
//!
//! The XDP program is not a separate file: `xdp-io`'s build script compiles it and the loader
//! embeds it with `include_bytes_aligned!`, so the target host needs neither nightly Rust nor
//! bpf-linker. [`embedded_bpf_object`] checks that each shipped binary really carries it (a build
//! without the eBPF toolchain embeds an empty placeholder), so a package can never ship an
//! XDP-less `switchyard`.
use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, ensure, Context as _};

/// Package name, also the service user and the `/etc` directory.
pub const NAME: &str = "switchyard";
/// The configuration file the dispatcher unit runs with; a conffile.
pub const CONFIG: &str = "/etc/switchyard/switchyard.toml";
/// The processor unit's configuration file; a conffile.
pub const PROCESSOR_CONFIG: &str = "/etc/switchyard/switchyard-processor.toml";
/// The dispatcher unit.
pub const UNIT: &str = "/lib/systemd/system/switchyard.service";
/// The processor unit.
pub const PROCESSOR_UNIT: &str = "/lib/systemd/system/switchyard-processor.service";
/// The binaries shipped, under `/usr/bin`.
pub const BINARIES: [&str; 2] = ["switchyard", "switchyard-processor"];

/// ELF machine number of eBPF objects (`EM_BPF`).
const EM_BPF: u16 = 247;

/// What [`package`] made.
#[derive(Debug)]
pub struct Package {
    /// The `.deb`: `target/debian/switchyard_<version>_<arch>.deb`.
    pub deb: PathBuf,
    /// Size in bytes of the eBPF object found in the shipped `switchyard`.
    pub bpf_object_bytes: usize,
}

/// Builds the release binaries (eBPF required) and the `.deb`; `root` is the workspace root.
pub fn package(root: &Path) -> anyhow::Result<Package> {
    build_release(root)?;
    let version = env!("CARGO_PKG_VERSION");
    let arch = output(Command::new("dpkg").arg("--print-architecture"))?;
    let out_dir = root.join("target/debian");
    let stage = out_dir.join(format!("{NAME}_{version}_{arch}"));
    if stage.exists() {
        fs::remove_dir_all(&stage).with_context(|| format!("removing {}", stage.display()))?;
    }

    // Binaries, stripped (Debian policy; the debug line tables are for profiling in the tree),
    // each checked for the embedded XDP program after stripping.
    let mut bpf_object_bytes = 0;
    for bin in BINARIES {
        let dst = stage.join("usr/bin").join(bin);
        copy(&root.join("target/release").join(bin), &dst, 0o755)?;
        let mut strip = Command::new("strip");
        strip
            .args(["--strip-unneeded", "--remove-section=.comment"])
            .arg(&dst);
        run(strip, &format!("strip {bin}"))?;
        if bin == "switchyard" {
            let image = fs::read(&dst)?;
            bpf_object_bytes = embedded_bpf_object(&image).with_context(|| {
                format!("{bin} carries no eBPF object: was it built without the eBPF toolchain? run `cargo xtask setup`")
            })?;
        }
    }

    let pkg = root.join("packaging");
    copy(&pkg.join("switchyard.toml"), &staged(&stage, CONFIG), 0o644)?;
    copy(
        &pkg.join("switchyard-processor.toml"),
        &staged(&stage, PROCESSOR_CONFIG),
        0o644,
    )?;
    copy(
        &pkg.join("switchyard.service"),
        &staged(&stage, UNIT),
        0o644,
    )?;
    copy(
        &pkg.join("switchyard-processor.service"),
        &staged(&stage, PROCESSOR_UNIT),
        0o644,
    )?;
    let doc = stage.join("usr/share/doc").join(NAME);
    copy(&pkg.join("debian/copyright"), &doc.join("copyright"), 0o644)?;
    copy(&root.join("README.md"), &doc.join("README.md"), 0o644)?;
    // A native package (no Debian revision in the version): its changelog is `changelog.gz`.
    let changelog = doc.join("changelog");
    fs::write(
        &changelog,
        format!(
            "{NAME} ({version}) unstable; urgency=medium\n\n  * Built by `cargo xtask package`.\n\n -- Switchyard developers <switchyard@example.invalid>  {}\n",
            output(Command::new("date").args(["-R", "-u", "-d", &format!("@{}", source_date_epoch(root))]))?
        ),
    )?;
    // Debian policy: documentation over 4 kB is compressed; -n: no name or timestamp in the
    // gzip header (reproducible).
    let mut gz = Command::new("gzip");
    gz.args(["-9nf"]).arg(&changelog).arg(doc.join("README.md"));
    run(gz, "gzip documentation")?;
    for f in ["changelog.gz", "README.md.gz"] {
        set_mode(&doc.join(f), 0o644)?;
    }

    let debian = stage.join("DEBIAN");
    for script in ["postinst", "prerm", "postrm"] {
        copy(
            &pkg.join("debian").join(script),
            &debian.join(script),
            0o755,
        )?;
    }
    write(
        &debian.join("conffiles"),
        &format!("{CONFIG}\n{PROCESSOR_CONFIG}\n"),
    )?;
    let depends = depends(&stage)?;
    let installed_kib = tree_bytes(&stage, &debian)?.div_ceil(1024);
    write(
        &debian.join("control"),
        &format!(
            "Package: {NAME}
Version: {version}
Architecture: {arch}
Maintainer: Switchyard developers <switchyard@example.invalid>
Installed-Size: {installed_kib}
Depends: {depends}, adduser
Section: net
Priority: optional
Homepage: https://example.invalid/switchyard
Description: SIP/MGCP dispatcher on XDP and AF_XDP
 Switchyard steers SIP and MGCP datagrams arriving at one address to a pool
 of call processors, keeping every dialog and connection on the processor
 that owns it. An XDP program hands the well-known ports to an AF_XDP socket;
 the dispatcher runs unprivileged with a few capabilities (see the unit).
 .
 The XDP program is embedded in /usr/bin/switchyard. Also contains
 switchyard-processor, the processor as a standalone server.
"
        ),
    )?;
    // Directories 0755 whatever the umask was.
    set_dir_modes(&stage)?;

    let deb = out_dir.join(format!("{NAME}_{version}_{arch}.deb"));
    let mut build = Command::new("dpkg-deb");
    build
        .args(["--build", "--root-owner-group"])
        .arg(&stage)
        .arg(&deb)
        .env("SOURCE_DATE_EPOCH", source_date_epoch(root).to_string());
    run(build, "dpkg-deb --build")?;
    Ok(Package {
        deb,
        bpf_object_bytes,
    })
}

/// `cargo build --release` of both binaries with the eBPF object required.
pub fn build_release(root: &Path) -> anyhow::Result<()> {
    let mut b = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    b.current_dir(root)
        .args([
            "build",
            "--release",
            "-p",
            "dispatcher-user",
            "-p",
            "processor",
        ])
        .args(["--bin", "switchyard", "--bin", "switchyard-processor"])
        .env("SWITCHYARD_REQUIRE_EBPF", "1");
    run(
        b,
        "cargo build --release (switchyard, switchyard-processor)",
    )
}

/// The size of the first eBPF ELF object inside `image` (a host binary), or an error if there
/// is none. The object is found by its ELF header: 64-bit little-endian, `e_machine == EM_BPF`;
/// its size is where its section header table ends.
pub fn embedded_bpf_object(image: &[u8]) -> anyhow::Result<usize> {
    let u16_at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let mut from = 0;
    while let Some(pos) = find(&image[from..], b"\x7fELF\x02\x01") {
        let start = from + pos;
        from = start + 1;
        let Some(h) = image.get(start..start + 64) else {
            break;
        };
        if u16_at(h, 18) != EM_BPF {
            continue;
        }
        let shoff = u64::from_le_bytes(h[40..48].try_into()?) as usize;
        let shentsize = u16_at(h, 58) as usize;
        let shnum = u16_at(h, 60) as usize;
        let size = shoff + shentsize * shnum;
        ensure!(
            start + size <= image.len(),
            "eBPF ELF header at offset {start} names a size past the end of the binary"
        );
        ensure!(
            shnum > 0 && size > 1024,
            "eBPF object at offset {start} is empty"
        );
        return Ok(size);
    }
    bail!("no eBPF ELF object (e_machine {EM_BPF}) in the binary")
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `Depends:` from the binaries' `NEEDED` entries: glibc at the newest symbol version used, and
/// libgcc-s1 (Rust's unwinder). Any other library is an error, so a new dependency cannot go
/// into the package unnoticed.
fn depends(stage: &Path) -> anyhow::Result<String> {
    let mut glibc = (2u32, 17u32);
    let mut gcc = false;
    for bin in BINARIES {
        let path = stage.join("usr/bin").join(bin);
        let dynamic = output(Command::new("readelf").arg("-dW").arg(&path))?;
        for line in dynamic.lines().filter(|l| l.contains("(NEEDED)")) {
            let lib = line
                .split('[')
                .nth(1)
                .and_then(|s| s.split(']').next())
                .unwrap_or_default();
            match lib {
                "libc.so.6"
                | "libm.so.6"
                | "libpthread.so.0"
                | "libdl.so.2"
                | "librt.so.1"
                | "ld-linux-x86-64.so.2"
                | "ld-linux-aarch64.so.1" => {}
                "libgcc_s.so.1" => gcc = true,
                other => bail!("{bin} needs {other}: add its Debian package to Depends"),
            }
        }
        let symbols = output(Command::new("objdump").arg("-T").arg(&path))?;
        for v in symbols.split("GLIBC_").skip(1) {
            let v: String = v
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let mut it = v.split('.').map(|n| n.parse::<u32>().unwrap_or(0));
            let ver = (it.next().unwrap_or(0), it.next().unwrap_or(0));
            glibc = glibc.max(ver);
        }
    }
    let mut d = format!("libc6 (>= {}.{})", glibc.0, glibc.1);
    if gcc {
        d.push_str(", libgcc-s1");
    }
    Ok(d)
}

/// Bytes of the regular files under `dir`, leaving out `skip` (the DEBIAN control directory).
fn tree_bytes(dir: &Path, skip: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for e in fs::read_dir(dir)? {
        let p = e?.path();
        if p == skip {
            continue;
        }
        let m = fs::symlink_metadata(&p)?;
        if m.is_dir() {
            total += tree_bytes(&p, skip)?;
        } else {
            total += m.len();
        }
    }
    Ok(total)
}

fn set_dir_modes(dir: &Path) -> anyhow::Result<()> {
    set_mode(dir, 0o755)?;
    for e in fs::read_dir(dir)? {
        let p = e?.path();
        if fs::symlink_metadata(&p)?.is_dir() {
            set_dir_modes(&p)?;
        }
    }
    Ok(())
}

/// The last commit's time (seconds), or 0 outside a git checkout: the archive's timestamps.
fn source_date_epoch(root: &Path) -> u64 {
    if let Some(v) = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return v;
    }
    let mut git = Command::new("git");
    git.current_dir(root).args(["log", "-1", "--format=%ct"]);
    output(&mut git)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn staged(stage: &Path, abs: &str) -> PathBuf {
    stage.join(abs.trim_start_matches('/'))
}

fn copy(src: &Path, dst: &Path, mode: u32) -> anyhow::Result<()> {
    if let Some(parent) = dst.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::copy(src, dst)
        .with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
    set_mode(dst, mode)
}

fn write(dst: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = dst.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(dst, text).with_context(|| format!("writing {}", dst.display()))?;
    set_mode(dst, 0o644)
}

fn set_mode(p: &Path, mode: u32) -> anyhow::Result<()> {
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", p.display()))
}

fn run(mut cmd: Command, what: &str) -> anyhow::Result<()> {
    eprintln!("xtask: {what}");
    let status = cmd.status().with_context(|| format!("spawning {what}"))?;
    ensure!(status.success(), "{what} failed ({status})");
    Ok(())
}

/// Stdout of `cmd`, trimmed; an error with its stderr if it fails.
fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("spawning {:?}", cmd.get_program()))?;
    ensure!(
        out.status.success(),
        "{:?} failed: {}",
        cmd.get_program(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake eBPF ELF header with a section table ending at `size`.
    fn bpf_header(size: usize) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[..6].copy_from_slice(b"\x7fELF\x02\x01");
        h[18..20].copy_from_slice(&EM_BPF.to_le_bytes());
        let shnum = 4u16;
        let shentsize = 64u16;
        let shoff = (size - usize::from(shnum * shentsize)) as u64;
        h[40..48].copy_from_slice(&shoff.to_le_bytes());
        h[58..60].copy_from_slice(&shentsize.to_le_bytes());
        h[60..62].copy_from_slice(&shnum.to_le_bytes());
        h.resize(size, 0);
        h
    }

    #[test]
    fn finds_an_embedded_bpf_object_after_a_host_elf_header() {
        let mut image = b"\x7fELF\x02\x01".to_vec();
        image.resize(200, 0x3e); // host header: e_machine x86-64, not BPF
        image.extend(bpf_header(4096));
        image.extend([0u8; 100]);
        assert_eq!(embedded_bpf_object(&image).unwrap(), 4096);
    }

    #[test]
    fn a_binary_without_a_bpf_object_is_refused() {
        let mut image = b"\x7fELF\x02\x01".to_vec();
        image.resize(4096, 0x3e);
        assert!(embedded_bpf_object(&image).is_err());
        // Truncated: the header names more bytes than there are.
        let mut cut = bpf_header(4096);
        cut.truncate(2000);
        assert!(embedded_bpf_object(&cut).is_err());
    }
}
