//! The environment facts rules match on (WSL version, networking mode, nameservers, the
//! unprivileged port limit), taken from `crate::facts`; `--assume` overrides them (for
//! analysis and tests).

use std::net::IpAddr;

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use crate::facts::{
    Facts,
    wsl::{NetworkingMode, WslKind},
};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Environment {
    pub wsl: WslKind,
    /// `nat`, `mirrored`, ... (WSL2 only).
    pub networking_mode: Option<String>,
    pub nameservers: Vec<IpAddr>,
    /// net.ipv4.ip_unprivileged_port_start
    pub unprivileged_port_start: u16,
}

impl Default for Environment {
    fn default() -> Self {
        Environment {
            wsl: WslKind::None,
            networking_mode: None,
            nameservers: Vec::new(),
            unprivileged_port_start: 1024,
        }
    }
}

impl Environment {
    /// What the knowledge base needs from the machine's facts.
    pub fn from_facts(facts: &Facts) -> Self {
        Environment {
            wsl: facts.wsl.kind,
            networking_mode: facts.wsl.networking_mode.and_then(|mode| {
                // Recordings from before the rename say virtioproxy.
                let mode = match mode {
                    NetworkingMode::VirtioProxy => NetworkingMode::Consomme,
                    mode => mode,
                };
                serde_json::to_value(mode).ok().and_then(|v| v.as_str().map(str::to_owned))
            }),
            nameservers: facts.dns.nameservers.iter().map(|n| n.ip).collect(),
            unprivileged_port_start: facts
                .machine
                .ip_unprivileged_port_start
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(1024),
        }
    }

    /// `--assume wsl2[,nat|mirrored|consomme|bridged|none]`, `wsl1`, `linux`.
    pub fn assume(&mut self, spec: &str) -> Result<()> {
        let mut parts = spec.split(',').map(str::trim);
        match parts.next() {
            Some("wsl2") => {
                self.wsl = WslKind::Wsl2;
                self.networking_mode = Some("nat".into());
            }
            Some("wsl1") => {
                self.wsl = WslKind::Wsl1;
                self.networking_mode = None;
            }
            Some("linux") => {
                self.wsl = WslKind::None;
                self.networking_mode = None;
            }
            _ => bail!("--assume {spec}: expected wsl2[,MODE], wsl1 or linux"),
        }
        if let Some(mode) = parts.next() {
            if self.wsl != WslKind::Wsl2
                || !matches!(mode, "nat" | "mirrored" | "consomme" | "bridged" | "none")
            {
                bail!(
                    "--assume {spec}: a networking mode (nat, mirrored, consomme, bridged or none) only goes with wsl2"
                );
            }
            self.networking_mode = Some(mode.into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_a_wsl2_machine() {
        let mut facts = Facts::default();
        facts.wsl.kind = WslKind::Wsl2;
        facts.wsl.networking_mode = Some(crate::facts::wsl::NetworkingMode::Mirrored);
        facts.machine.ip_unprivileged_port_start = Some(80);
        let env = Environment::from_facts(&facts);
        assert_eq!((env.wsl, env.networking_mode.as_deref()), (WslKind::Wsl2, Some("mirrored")));
        assert_eq!(env.unprivileged_port_start, 80);
    }

    #[test]
    fn assume_overrides() {
        let mut env = Environment::default();
        env.assume("wsl2,mirrored").unwrap();
        assert_eq!((env.wsl, env.networking_mode.as_deref()), (WslKind::Wsl2, Some("mirrored")));
        env.assume("wsl2").unwrap();
        assert_eq!(env.networking_mode.as_deref(), Some("nat"));
        env.assume("wsl2,consomme").unwrap();
        assert_eq!(env.networking_mode.as_deref(), Some("consomme"));
        assert!(env.assume("wsl1,nat").is_err());
        assert!(env.assume("wsl2,hyperv").is_err());
        assert!(env.assume("macos").is_err());
    }
}
