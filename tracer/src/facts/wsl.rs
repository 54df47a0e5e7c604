//! Is this WSL, which version, in which networking mode, with which `/etc/wsl.conf`?
//!
//! Detection functions take what they look at as parameters (kernel release, files, env,
//! command output) so they can be tested with samples from real WSL machines; `observe`
//! reads the real ones.

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use super::wsl_network::NetworkingMode;
use super::wsl_network::{self, NetworkView, SystemTree};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WslKind {
    /// A Linux kernel not made by Microsoft for WSL.
    #[default]
    None,
    /// WSL1: no Linux kernel at all, syscalls translated by Windows (no eBPF).
    Wsl1,
    /// WSL2: a real Linux kernel in a lightweight VM.
    Wsl2,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Wsl {
    pub kind: WslKind,
    /// What the verdict rests on, e.g. `kernel release 5.15.167.4-microsoft-standard-WSL2`.
    pub evidence: Vec<String>,
    /// `WSL_DISTRO_NAME` (sudo usually drops it from the environment).
    pub distro: Option<String>,
    /// Windows programs can be started from Linux (`/proc/sys/fs/binfmt_misc/WSLInterop`).
    pub interop: bool,
    pub networking_mode: Option<NetworkingMode>,
    /// Where the mode comes from: the facts it rests on, joined (`network` lists them).
    pub networking_mode_source: Option<String>,
    pub conf: WslConf,
    /// WSL2: the networking mode, DNS tunnelling and port tracker with the facts behind each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkView>,
}

/// The `/etc/wsl.conf` settings that change networking; `None` when not set (WSL's default
/// applies: both `generate_*` true, systemd off unless the distro turned it on).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WslConf {
    pub present: bool,
    /// `[network] generateResolvConf`
    pub generate_resolv_conf: Option<bool>,
    /// `[network] generateHosts`
    pub generate_hosts: Option<bool>,
    /// `[boot] systemd`
    pub systemd: Option<bool>,
}

/// What WSL detection looks at.
#[derive(Clone, Debug, Default)]
pub struct Signs<'a> {
    /// `/proc/sys/kernel/osrelease`
    pub kernel_release: &'a str,
    /// `/proc/sys/fs/binfmt_misc/WSLInterop` (or `WSLInterop-late`) exists.
    pub interop: bool,
    /// `WSL_DISTRO_NAME`
    pub distro_env: Option<&'a str>,
    /// `/run/WSL` exists (WSL's init keeps its sockets there).
    pub run_wsl: bool,
}

/// WSL1 reports a made-up 4.4.0 release ending in `-Microsoft`; WSL2 kernels built by
/// Microsoft say `microsoft-standard` (`-WSL2` since 5.10). A custom WSL2 kernel may say
/// neither: then WSL's own files and environment decide.
pub fn detect(signs: &Signs<'_>) -> (WslKind, Vec<String>) {
    let release = signs.kernel_release.trim();
    let mut evidence = Vec::new();
    let lower = release.to_ascii_lowercase();
    let kind_from_release = if release.ends_with("-Microsoft") {
        Some(WslKind::Wsl1)
    } else if lower.contains("microsoft") || lower.ends_with("-wsl2") {
        Some(WslKind::Wsl2)
    } else {
        None
    };
    if kind_from_release.is_some() {
        evidence.push(format!("kernel release {release}"));
    }
    if signs.interop {
        evidence.push("/proc/sys/fs/binfmt_misc/WSLInterop".to_owned());
    }
    if let Some(distro) = signs.distro_env {
        evidence.push(format!("WSL_DISTRO_NAME={distro}"));
    }
    if signs.run_wsl {
        evidence.push("/run/WSL".to_owned());
    }
    let kind = match kind_from_release {
        Some(kind) => kind,
        // WSL's files without a Microsoft kernel: WSL2 with a custom kernel (WSL1 always
        // reports its fixed release).
        None if !evidence.is_empty() => WslKind::Wsl2,
        None => WslKind::None,
    };
    (kind, evidence)
}

/// `/etc/wsl.conf` (an INI file; keys are case-insensitive, `#` and `;` start comments).
pub fn parse_wsl_conf(text: &str) -> WslConf {
    let mut conf = WslConf { present: true, ..WslConf::default() };
    let mut section = String::new();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or_default().trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim().to_ascii_lowercase();
            continue;
        }
        let Some((key, value)) = line.split_once('=') else { continue };
        let key = key.trim().to_ascii_lowercase();
        let value = match value.trim().trim_matches('"').to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => Some(true),
            "false" | "no" | "0" => Some(false),
            _ => None,
        };
        match (section.as_str(), key.as_str()) {
            ("network", "generateresolvconf") => conf.generate_resolv_conf = value,
            ("network", "generatehosts") => conf.generate_hosts = value,
            ("boot", "systemd") => conf.systemd = value,
            _ => {}
        }
    }
    conf
}

/// Reads the running system.
pub fn observe(kernel_release: &str) -> Wsl {
    let distro = std::env::var("WSL_DISTRO_NAME").ok();
    let interop = ["WSLInterop", "WSLInterop-late"]
        .iter()
        .any(|f| Path::new("/proc/sys/fs/binfmt_misc").join(f).exists());
    let signs = Signs {
        kernel_release,
        interop,
        distro_env: distro.as_deref(),
        run_wsl: Path::new("/run/WSL").is_dir(),
    };
    let (kind, evidence) = detect(&signs);
    let conf =
        std::fs::read_to_string("/etc/wsl.conf").map(|t| parse_wsl_conf(&t)).unwrap_or_default();
    let network = (kind == WslKind::Wsl2).then(|| wsl_network::detect(&SystemTree::live()));
    let networking_mode = network.as_ref().and_then(|n| n.mode);
    let networking_mode_source = network.as_ref().map(|n| n.mode_evidence.join("; "));
    Wsl { kind, evidence, distro, interop, networking_mode, networking_mode_source, conf, network }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(release: &str) -> WslKind {
        detect(&Signs { kernel_release: release, ..Signs::default() }).0
    }

    /// Kernel releases reported by real WSL installations.
    #[test]
    fn kernel_releases() {
        for wsl2 in [
            "5.15.167.4-microsoft-standard-WSL2",
            "5.15.146.1-microsoft-standard-WSL2",
            "6.6.87.2-microsoft-standard-WSL2",
            "6.1.21.2-microsoft-standard-WSL2",
            "4.19.128-microsoft-standard",
            "7.0.13-arch1-1-wsl-microsoft-standard-WSL2",
        ] {
            assert_eq!(kind(wsl2), WslKind::Wsl2, "{wsl2}");
        }
        for wsl1 in ["4.4.0-19041-Microsoft", "4.4.0-22621-Microsoft", "4.4.0-17763-Microsoft"] {
            assert_eq!(kind(wsl1), WslKind::Wsl1, "{wsl1}");
        }
        for native in ["6.18.0", "6.1.0-27-amd64", "5.15.0-105-generic", "6.8.0-1015-azure"] {
            assert_eq!(kind(native), WslKind::None, "{native}");
        }
    }

    /// A custom WSL2 kernel (built from a distribution's sources) still runs under WSL's init.
    #[test]
    fn custom_kernel_under_wsl() {
        let signs = Signs {
            kernel_release: "6.12.1-custom",
            interop: true,
            distro_env: Some("Ubuntu-24.04"),
            run_wsl: true,
        };
        let (kind, evidence) = detect(&signs);
        assert_eq!(kind, WslKind::Wsl2);
        assert_eq!(
            evidence,
            ["/proc/sys/fs/binfmt_misc/WSLInterop", "WSL_DISTRO_NAME=Ubuntu-24.04", "/run/WSL"]
        );
        let (_, evidence) =
            detect(&Signs { kernel_release: "6.6.87.2-microsoft-standard-WSL2", ..signs });
        assert_eq!(evidence[0], "kernel release 6.6.87.2-microsoft-standard-WSL2");
    }

    #[test]
    fn wsl_conf() {
        // As written by users following Microsoft's documentation.
        let conf = parse_wsl_conf(
            "[boot]\nsystemd=true\n\n[network]\ngenerateHosts = false\ngenerateResolvConf = false # we manage DNS\nhostname = devbox\n",
        );
        assert_eq!(
            conf,
            WslConf {
                present: true,
                generate_resolv_conf: Some(false),
                generate_hosts: Some(false),
                systemd: Some(true)
            }
        );
        // Keys in other sections do not count; unknown values are unset.
        let conf =
            parse_wsl_conf("[automount]\nsystemd=true\n[Network]\nGenerateResolvConf=maybe\n");
        assert_eq!((conf.systemd, conf.generate_resolv_conf), (None, None));
        assert!(parse_wsl_conf("").present);
    }
}
