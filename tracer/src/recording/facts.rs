//! The environment facts a recording carries, so that `analyze` judges events against the
//! machine they were recorded on, not the one analysing them.
//!
//! SWAP POINT: this is a minimal stand-in with what can be read here without the `facts`
//! module being written on another branch (`crate::facts::Facts`: WSL version, networking
//! mode, DNS setup, capabilities...). When that lands, replace [`RecordedFacts`] with it (its
//! `Deserialize` must stay tolerant: `#[serde(default)]` fields, unknown values accepted) and
//! [`RecordedFacts::of_this_machine`] with its collector.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedFacts {
    /// `uname -r`.
    #[serde(default)]
    pub kernel_release: String,
    /// `null` on native Linux.
    #[serde(default)]
    pub wsl: Option<Wsl>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Wsl {
    #[serde(rename = "wsl1")]
    Wsl1,
    #[serde(rename = "wsl2")]
    Wsl2,
    /// A value written by a newer wsltrace.
    #[serde(other, rename = "unknown")]
    Unknown,
}

impl RecordedFacts {
    /// The facts of the machine wsltrace runs on.
    pub fn of_this_machine() -> RecordedFacts {
        let kernel_release = read_proc("/proc/sys/kernel/osrelease");
        RecordedFacts { wsl: wsl_from_release(&kernel_release), kernel_release }
    }
}

/// The host name in wsltrace's UTS namespace (on WSL, the Windows computer name by default).
pub fn hostname() -> String {
    read_proc("/proc/sys/kernel/hostname")
}

fn read_proc(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_owned()).unwrap_or_default()
}

/// WSL2 kernels are released as `5.15.153.1-microsoft-standard-WSL2`; WSL1 has no Linux kernel
/// and reports a Windows build as `4.4.0-19041-Microsoft`. A custom WSL2 kernel without
/// "microsoft" in its name is not recognised here (the `facts` module looks further).
pub fn wsl_from_release(release: &str) -> Option<Wsl> {
    let lower = release.to_ascii_lowercase();
    if !lower.contains("microsoft") {
        return None;
    }
    if lower.contains("wsl2") || lower.contains("microsoft-standard") {
        Some(Wsl::Wsl2)
    } else {
        Some(Wsl::Wsl1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wsl_versions_from_kernel_releases() {
        assert_eq!(wsl_from_release("5.15.153.1-microsoft-standard-WSL2"), Some(Wsl::Wsl2));
        assert_eq!(wsl_from_release("6.6.36.3-microsoft-standard-WSL2+"), Some(Wsl::Wsl2));
        assert_eq!(wsl_from_release("4.19.128-microsoft-standard"), Some(Wsl::Wsl2));
        assert_eq!(wsl_from_release("4.4.0-19041-Microsoft"), Some(Wsl::Wsl1));
        assert_eq!(wsl_from_release("6.18.0-1-amd64"), None);
    }

    #[test]
    fn facts_serialize_as_documented_and_tolerate_new_values() {
        let facts = RecordedFacts { kernel_release: "k".into(), wsl: Some(Wsl::Wsl2) };
        assert_eq!(
            serde_json::to_string(&facts).unwrap(),
            r#"{"kernel_release":"k","wsl":"wsl2"}"#
        );
        let native: RecordedFacts = serde_json::from_str(r#"{"wsl":null}"#).unwrap();
        assert_eq!(native.wsl, None);
        let newer: RecordedFacts =
            serde_json::from_str(r#"{"wsl":"wsl3","networking":"mirrored"}"#).unwrap();
        assert_eq!(newer.wsl, Some(Wsl::Unknown));
    }
}
