//! What building and testing need beyond stable Rust, installed when missing.

use std::process::{Command, Stdio};

use anyhow::{Result, bail};

use crate::run_cmd;

/// bpf-linker 0.11+ needs an external LLVM; 0.10.3 uses rustc's own (see shared/TOOLCHAIN.md).
const BPF_LINKER_VERSION: &str = "0.10.3";
/// `cargo xtask deb`'s packer; 3.8.0 builds with rustc 1.95.
const CARGO_DEB_VERSION: &str = "3.8.0";
/// The newest cargo-fuzz that builds with the stable toolchain here (rustc 1.95).
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// What building and testing need.
pub fn install() -> Result<()> {
    build_tools()?;
    // tests/package.rs builds the package, installs it with dpkg, reads its man page and
    // checks its completion scripts with each shell.
    cargo_deb()?;
    debian_package("man", "man-db")?;
    debian_package("zsh", "zsh")?;
    debian_package("fish", "fish")?;
    debian_package("strace", "strace")?;
    // tests/async_clients.rs traces curl's non-blocking connects.
    debian_package("curl", "curl")?;
    // tests/servers.rs attaches to an nginx master whose workers already run.
    debian_package("nginx", "nginx")?;
    // tests/metrics.rs checks --metrics with promtool and scrapes it with a Prometheus server.
    debian_package("promtool", "prometheus")?;
    // tests/context.rs compares socket snapshots with `ss` and brings up lo with `ip`.
    debian_package("ss", "iproute2")
}

/// What `cargo xtask fuzz` needs: nightly (libFuzzer's sanitizer flags), bpf-linker (the
/// tracer library embeds the kernel programs) and cargo-fuzz.
pub fn install_for_fuzzing() -> Result<()> {
    nightly_with_rust_src()?;
    bpf_linker()?;
    cargo_tool(
        Command::new("cargo").args(["fuzz", "--version"]),
        "cargo-fuzz",
        CARGO_FUZZ_VERSION,
        "about two minutes",
    )
}

/// What `cargo xtask kernels` boots guests with: qemu, a static busybox for the initramfs
/// and cpio to pack it.
pub fn vm_tools() -> Result<()> {
    debian_package("qemu-system-x86_64", "qemu-system-x86")?;
    debian_package("cpio", "cpio")?;
    // A dynamic busybox would find no libc in the initramfs.
    let installed =
        output(Command::new("dpkg-query").args(["-W", "-f", "${Status}", "busybox-static"]))
            .is_some_and(|s| s.contains("install ok installed"));
    if !installed {
        apt_install("busybox-static")?;
    }
    Ok(())
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.stderr(Stdio::null()).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What building the release binary needs (the eBPF object is built by tracer/build.rs).
pub fn build_tools() -> Result<()> {
    nightly_with_rust_src()?;
    bpf_linker()
}

/// The kernel programs build with `-Z build-std=core` on nightly.
fn nightly_with_rust_src() -> Result<()> {
    if !succeeds(Command::new("rustup").args(["run", "nightly", "rustc", "--version"])) {
        eprintln!("xtask: installing the nightly toolchain");
        run_cmd(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        "nightly",
    ]))
    .unwrap_or_default();
    if !installed.lines().any(|c| c.starts_with("rust-src")) {
        eprintln!("xtask: adding rust-src to nightly");
        run_cmd(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    Ok(())
}

fn bpf_linker() -> Result<()> {
    cargo_tool(
        Command::new("bpf-linker").arg("--version"),
        "bpf-linker",
        BPF_LINKER_VERSION,
        "about a minute",
    )
}

pub fn cargo_deb() -> Result<()> {
    cargo_tool(
        Command::new("cargo").args(["deb", "--version"]),
        "cargo-deb",
        CARGO_DEB_VERSION,
        "a few minutes",
    )
}

/// `cargo install CRATE@VERSION` unless `version_cmd` already reports that version.
fn cargo_tool(version_cmd: &mut Command, krate: &str, version: &str, takes: &str) -> Result<()> {
    if output(version_cmd).unwrap_or_default().contains(version) {
        return Ok(());
    }
    eprintln!("xtask: installing {krate} {version} ({takes})");
    run_cmd(Command::new("cargo").args([
        "install",
        &format!("{krate}@{version}"),
        "--locked",
        "--force",
    ]))
}

/// Installs a Debian package when `binary` is not on PATH (tools the tests compare with).
fn debian_package(binary: &str, package: &str) -> Result<()> {
    if succeeds(Command::new("sh").args(["-c", &format!("command -v {binary}")])) {
        return Ok(());
    }
    apt_install(package)?;
    if !succeeds(Command::new("sh").args(["-c", &format!("command -v {binary}")])) {
        bail!("{binary} is still missing after installing {package}");
    }
    Ok(())
}

fn apt_install(package: &str) -> Result<()> {
    eprintln!("xtask: installing {package}");
    if !succeeds(
        Command::new("apt-get")
            .args(["install", "-y", "-q", package])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    ) {
        run_cmd(Command::new("apt-get").args(["update", "-q"]))?;
        run_cmd(
            Command::new("apt-get")
                .args(["install", "-y", "-q", package])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
    }
    Ok(())
}

/// bpftrace for the bench's comparison, when this machine can run it: Ok, or why not.
pub fn bpftrace() -> Result<(), String> {
    debian_package("bpftrace", "bpftrace")
        .map_err(|err| format!("installing it failed ({err:#})"))?;
    // Some kernels or containers refuse it (lockdown, no BTF, no permission): try a probe.
    let out = Command::new("bpftrace")
        .args(["-e", "tracepoint:syscalls:sys_enter_getsockopt /pid == 0/ {} BEGIN { exit(); }"])
        .stdout(Stdio::null())
        .output()
        .map_err(|err| format!("it cannot be started ({err})"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let why = stderr.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("no message");
        return Err(format!("it cannot attach a syscall tracepoint here: {why}"));
    }
    Ok(())
}

/// ApacheBench (`ab`), the load of the bench's nginx row: Ok, or why not.
pub fn ab() -> Result<(), String> {
    debian_package("ab", "apache2-utils")
        .map_err(|err| format!("installing apache2-utils failed ({err:#})"))
}

/// bpftool, with which the bench reads the kernel's per-program statistics: Ok, or why not.
pub fn bpftool() -> Result<(), String> {
    debian_package("bpftool", "bpftool").map_err(|err| format!("installing it failed ({err:#})"))
}
