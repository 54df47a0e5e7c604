//! Debian's kernel packages, fetched with a private apt state under the cache (the machine's
//! own sources and package lists are left alone) and unpacked with `dpkg-deb -x`: nothing is
//! installed.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use super::Kernel;
use crate::run_cmd;

/// An unpacked kernel package: the image and the tree its modules are in.
pub struct Unpacked {
    pub vmlinuz: PathBuf,
    /// `lib/modules/<release>` (or `usr/lib/modules/<release>` since trixie).
    pub modules: PathBuf,
}

/// The kernel's image and modules, from the cache or fetched into it.
pub fn kernel(cache: &Path, kernel: &Kernel) -> Result<Unpacked> {
    let dir = cache.join(kernel.name);
    if let Ok(unpacked) = find(&dir) {
        return Ok(unpacked);
    }
    let apt = Apt::new(&cache.join("apt"))?;
    let package = apt.image_package(kernel.suite)?;
    eprintln!("xtask: fetching {package} from Debian {}", kernel.suite);
    let deb = apt.download(&package)?;
    // Unpacked beside the final place and renamed: an interrupted run leaves no half tree.
    let partial = cache.join(format!("{}.partial", kernel.name));
    let _ = fs::remove_dir_all(&partial);
    run_cmd(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&partial))?;
    let _ = fs::remove_dir_all(&dir);
    fs::rename(&partial, &dir)?;
    let _ = fs::remove_file(&deb);
    find(&dir)
}

fn find(dir: &Path) -> Result<Unpacked> {
    let boot = dir.join("boot");
    let vmlinuz = fs::read_dir(&boot)
        .with_context(|| format!("reading {}", boot.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-")))
        .with_context(|| format!("no vmlinuz-* in {}", boot.display()))?;
    let release = vmlinuz
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("vmlinuz-"))
        .context("kernel image name")?
        .to_owned();
    let modules = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|m| dir.join(m).join(&release))
        .find(|m| m.is_dir())
        .with_context(|| format!("no modules for {release} in {}", dir.display()))?;
    Ok(Unpacked { vmlinuz, modules })
}

/// apt-get and apt-cache with their own sources list, lists and cache.
struct Apt {
    options: Vec<String>,
    debs: PathBuf,
}

impl Apt {
    fn new(dir: &Path) -> Result<Apt> {
        let lists = dir.join("lists");
        let debs = dir.join("debs");
        for d in [lists.join("partial"), debs.join("partial")] {
            fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        }
        let sources = dir.join("sources.list");
        let mirror = mirror();
        let list: String =
            super::MATRIX.iter().map(|k| format!("deb {mirror} {} main\n", k.suite)).collect();
        fs::write(&sources, list)?;
        let path = |p: &Path| p.display().to_string();
        let options = [
            format!("Dir::Etc::SourceList={}", path(&sources)),
            "Dir::Etc::SourceParts=/nonexistent".to_owned(),
            format!("Dir::State::Lists={}", path(&lists)),
            format!("Dir::Cache::Archives={}", path(&debs)),
            // Package indexes only: no translations or AppStream metadata.
            "Acquire::Languages=none".to_owned(),
            "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false".to_owned(),
            "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false".to_owned(),
            "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false".to_owned(),
            // The cache is root's; apt's download user could not write there.
            "APT::Sandbox::User=root".to_owned(),
            // Our own lists: the machine's apt lock is not ours to wait for.
            "Debug::NoLocking=1".to_owned(),
        ]
        .into_iter()
        .flat_map(|o| ["-o".to_owned(), o])
        .collect();
        let apt = Apt { options, debs };
        // apt keeps the server's dates on the lists: a stamp of our own says when they came.
        let stamp = dir.join("updated");
        let fresh = fs::metadata(&stamp)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age.as_secs() < 24 * 3600));
        if !fresh {
            run_cmd(
                Command::new("apt-get")
                    .args(&apt.options)
                    .args(["update", "-q"])
                    .stdout(std::io::stderr()),
            )?;
            fs::write(&stamp, "")?;
        }
        Ok(apt)
    }

    /// The versioned image package `linux-image-amd64` points to in `suite`.
    fn image_package(&self, suite: &str) -> Result<String> {
        let out = Command::new("apt-cache")
            .args(&self.options)
            .args(["show", &format!("linux-image-amd64/{suite}")])
            .output()
            .context("running apt-cache")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let depends = text
            .lines()
            .find_map(|l| l.strip_prefix("Depends: "))
            .with_context(|| format!("linux-image-amd64 in {suite}: no Depends line"))?;
        let package = depends.split([' ', ',', '|']).next().unwrap_or_default();
        if !package.starts_with("linux-image-") {
            bail!("linux-image-amd64 in {suite} depends on {depends:?}, not a kernel image");
        }
        Ok(package.to_owned())
    }

    fn download(&self, package: &str) -> Result<PathBuf> {
        run_cmd(
            Command::new("apt-get")
                .args(&self.options)
                .args(["download", "-q", package])
                .current_dir(&self.debs)
                // stdout is for the verdicts.
                .stdout(std::io::stderr()),
        )?;
        fs::read_dir(&self.debs)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(package)))
            .with_context(|| format!("apt-get download left no {package}*.deb"))
    }
}

/// The machine's own Debian mirror (its bookworm line), else deb.debian.org.
fn mirror() -> String {
    let files = ["/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"];
    files
        .iter()
        .filter_map(|f| fs::read_to_string(f).ok())
        .flat_map(|text| text.lines().map(str::to_owned).collect::<Vec<_>>())
        .filter_map(|line| {
            let line = line.trim();
            if let Some(uris) = line.strip_prefix("URIs:") {
                return uris.split_whitespace().next().map(str::to_owned);
            }
            // `deb [options] URI suite components`
            let rest = line.strip_prefix("deb ")?;
            let rest = match rest.trim_start().strip_prefix('[') {
                Some(r) => r.split_once(']')?.1,
                None => rest,
            };
            rest.split_whitespace().next().map(str::to_owned)
        })
        .find(|uri| uri.trim_end_matches('/').ends_with("/debian"))
        .unwrap_or_else(|| "http://deb.debian.org/debian".to_owned())
}
