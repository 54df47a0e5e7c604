//! `cargo xtask deb`: the Debian package, `target/debian/wsltrace_<version>_<arch>.deb`.
//!
//! The release binary (with its embedded eBPF object), the man pages and completion scripts
//! it generates from its own command-line definition, the README and the trace-format doc.
//! cargo-deb packs them as `[package.metadata.deb]` in tracer/Cargo.toml lists them.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, Result, bail};

use crate::{cargo, prerequisites, run_cmd};

/// Where the generated assets go: tracer/Cargo.toml's asset list names
/// `target/release/package/...` (cargo-deb maps `target/release` to the real target dir).
const ASSETS: &str = "release/package";

/// Completion scripts: the shell, and the file name its Debian directory expects.
const COMPLETIONS: [(&str, &str); 3] =
    [("bash", "wsltrace"), ("zsh", "_wsltrace"), ("fish", "wsltrace.fish")];

pub fn run() -> Result<()> {
    prerequisites::build_tools()?;
    prerequisites::cargo_deb()?;
    let started = Instant::now();
    cargo(&["build", "--release", "--package", "tracer"])?;
    let target = target_dir()?;
    let wsltrace = target.join("release/wsltrace");
    generate_assets(&wsltrace, &target.join(ASSETS))?;

    // The workspace's version, which tracer has too.
    let deb = target.join("debian").join(format!(
        "wsltrace_{}_{}.deb",
        env!("CARGO_PKG_VERSION"),
        architecture()?
    ));
    // A failed run must not leave the last package looking like its result.
    let _ = std::fs::remove_file(&deb);
    // --no-build: the binary was just built above, as `cargo xtask setup` builds it.
    run_cmd(
        Command::new(crate::env_or("CARGO", "cargo"))
            .args(["deb", "--package", "tracer", "--no-build", "--output"])
            .arg(&deb),
    )?;
    let size =
        std::fs::metadata(&deb).with_context(|| format!("{} was not made", deb.display()))?;
    eprintln!(
        "xtask: built {} ({:.1} MB) in {:.1} s; install it with `dpkg -i {}`",
        deb.display(),
        size.len() as f64 / 1e6,
        started.elapsed().as_secs_f64(),
        deb.display()
    );
    Ok(())
}

/// `target/`, or CARGO_TARGET_DIR where it is set.
fn target_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let root =
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("xtask/ has no parent directory")?;
    Ok(root.join("target"))
}

/// dpkg's name for this machine's architecture (amd64), as cargo-deb names the package.
fn architecture() -> Result<String> {
    let out = Command::new("dpkg")
        .arg("--print-architecture")
        .output()
        .context("running dpkg --print-architecture (is this Debian?)")?;
    if !out.status.success() {
        bail!("dpkg --print-architecture failed: {}", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The man pages (gzipped, as Debian ships them) and completion scripts, made by the binary
/// itself so that they describe exactly the options it has.
fn generate_assets(wsltrace: &Path, dir: &Path) -> Result<()> {
    if dir.exists() {
        // A sub-command removed since the last build must not leave its page behind.
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    let man = dir.join("man");
    run_cmd(Command::new(wsltrace).arg("manpages").arg(&man))?;
    let mut pages: Vec<PathBuf> =
        std::fs::read_dir(&man)?.map(|entry| entry.map(|e| e.path())).collect::<Result<_, _>>()?;
    pages.sort();
    if pages.is_empty() {
        bail!("wsltrace manpages wrote nothing to {}", man.display());
    }
    // -n: no name or time stamp in the header, so the same page gives the same bytes.
    run_cmd(Command::new("gzip").args(["-9", "-n", "-f"]).args(&pages))?;

    let completions = dir.join("completions");
    std::fs::create_dir_all(&completions)?;
    for (shell, file) in COMPLETIONS {
        let path = completions.join(file);
        let out = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        run_cmd(Command::new(wsltrace).args(["completions", shell]).stdout(Stdio::from(out)))?;
    }
    Ok(())
}
