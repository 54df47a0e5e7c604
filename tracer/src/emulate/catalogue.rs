//! The quirk catalogue (tracer/data/quirks.toml): what each quirk is, where it comes from, and
//! which matcher of the kernel programs reproduces it. Parsed and validated at start-up; the
//! code never names an individual quirk.

use std::{fmt, path::PathBuf, sync::LazyLock};

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};
use tracer_common::emulate::PortRange;

use crate::decode::{errno::Errno, names};

/// The catalogue shipped in the binary.
const EMBEDDED: &str = include_str!("../../data/quirks.toml");

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Wsl1,
    Wsl2,
}

impl Platform {
    pub const ALL: [Platform; 2] = [Platform::Wsl1, Platform::Wsl2];

    pub fn name(self) -> &'static str {
        match self {
            Platform::Wsl1 => "wsl1",
            Platform::Wsl2 => "wsl2",
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    /// Reproduced on a real system by the wsltrace authors.
    Verified,
    /// Taken from third-party reports.
    Reported,
}

/// One quirk as written in the catalogue.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quirk {
    pub id: String,
    pub title: String,
    pub platforms: Vec<Platform>,
    pub effect: String,
    pub explanation: String,
    pub references: Vec<String>,
    pub confidence: Confidence,
    pub inject: Inject,
}

/// Which matcher reproduces the quirk, with names as written in the file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "hook", rename_all = "lowercase", deny_unknown_fields)]
pub enum Inject {
    Getsockopt {
        level: String,
        optname: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        family: Option<String>,
        errno: String,
    },
    Connect {
        when: ConnectWhen,
        blocking: Blocking,
        errno: String,
    },
    Bind {
        errno: String,
        /// Default targets, replaced by the command line's.
        #[serde(default)]
        ports: Vec<String>,
        #[serde(default)]
        unix_prefixes: Vec<String>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectWhen {
    /// Nothing listens at the destination (decided in the kernel by a socket lookup).
    NoListener,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Blocking {
    Any,
    Nonblocking,
}

/// A quirk's matcher with every name resolved to the number the kernel compares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Getsockopt { level: i32, optname: i32, family: u32, errno: Errno },
    ConnectNoListener { nonblocking_only: bool, errno: Errno },
    Bind { errno: Errno, ports: Vec<PortRange>, unix_prefixes: Vec<PathBuf> },
}

#[derive(Debug)]
pub struct Entry {
    pub quirk: Quirk,
    pub action: Action,
}

#[derive(Debug)]
pub struct Catalogue {
    pub entries: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    quirk: Vec<Quirk>,
}

static CATALOGUE: LazyLock<Result<Catalogue, String>> =
    LazyLock::new(|| Catalogue::parse(EMBEDDED).map_err(|err| format!("{err:#}")));

impl Catalogue {
    /// The catalogue built into wsltrace.
    pub fn embedded() -> Result<&'static Catalogue> {
        CATALOGUE.as_ref().map_err(|err| {
            anyhow::anyhow!(
                "the built-in quirk catalogue is invalid ({err}): fix tracer/data/quirks.toml"
            )
        })
    }

    pub fn parse(text: &str) -> Result<Catalogue> {
        let file: File = toml::from_str(text).map_err(|err| {
            // toml's message spans several lines (with a caret under the spot): keep one.
            let line = err.span().map(|s| text[..s.start].lines().count().max(1));
            anyhow::anyhow!(
                "{}{}",
                line.map(|l| format!("line {l}: ")).unwrap_or_default(),
                err.message()
            )
        })?;
        let mut entries: Vec<Entry> = Vec::new();
        for quirk in file.quirk {
            let id = quirk.id.clone();
            let valid_id = !id.is_empty()
                && id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !valid_id {
                bail!("quirk id '{id}' must be lowercase letters, digits and dashes");
            }
            if entries.iter().any(|e| e.quirk.id == id) {
                bail!("quirk '{id}' is defined twice");
            }
            if quirk.platforms.is_empty() || quirk.references.is_empty() {
                bail!("quirk '{id}' needs at least one platform and one reference");
            }
            let action = resolve(&quirk.inject).with_context(|| format!("quirk '{id}'"))?;
            entries.push(Entry { quirk, action });
        }
        Ok(Catalogue { entries })
    }

    pub fn get(&self, id: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.quirk.id == id)
    }

    pub fn ids(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.quirk.id.as_str()).collect()
    }

    /// The quirks attributed to `platform`, in catalogue order.
    pub fn profile(&self, platform: Platform) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(move |e| e.quirk.platforms.contains(&platform))
    }
}

fn resolve(inject: &Inject) -> Result<Action> {
    Ok(match inject {
        Inject::Getsockopt { level, optname, family, errno } => {
            let level_value = by_name(names::LEVELS, level, "socket option level")?;
            let optname =
                by_name(names::options_at(level_value), optname, &format!("option at {level}"))?;
            let family = match family {
                Some(f) => by_name(names::FAMILIES, f, "address family")? as u32,
                None => 0,
            };
            Action::Getsockopt {
                level: level_value as i32,
                optname: optname as i32,
                family,
                errno: errno_named(errno)?,
            }
        }
        Inject::Connect { when: ConnectWhen::NoListener, blocking, errno } => {
            Action::ConnectNoListener {
                nonblocking_only: *blocking == Blocking::Nonblocking,
                errno: errno_named(errno)?,
            }
        }
        Inject::Bind { errno, ports, unix_prefixes } => Action::Bind {
            errno: errno_named(errno)?,
            ports: ports
                .iter()
                .map(|p| parse_port_range(p))
                .collect::<Result<_, _>>()
                .map_err(|err| anyhow::anyhow!("{err}"))?,
            unix_prefixes: unix_prefixes
                .iter()
                .map(|p| parse_path_prefix(p))
                .collect::<Result<_, _>>()
                .map_err(|err| anyhow::anyhow!("{err}"))?,
        },
    })
}

fn by_name(table: names::Table, name: &str, what: &str) -> Result<i64> {
    match table.iter().find(|(_, n)| *n == name) {
        Some((value, _)) => Ok(*value),
        None => bail!("'{name}' is not a known {what}"),
    }
}

fn errno_named(name: &str) -> Result<Errno> {
    Errno::parse(name).map_err(|err| anyhow::anyhow!("{err}"))
}

/// `8080` or `8000-8100` (inclusive); port 0 is "any free port" and cannot be a target.
pub fn parse_port_range(s: &str) -> Result<PortRange, String> {
    let bad = || format!("'{s}' is not a port or a port range (e.g. 8080 or 50000-50059)");
    let (first, last) = match s.trim().split_once('-') {
        Some((a, b)) => (a.trim(), b.trim()),
        None => (s.trim(), s.trim()),
    };
    let first: u16 = first.parse().map_err(|_| bad())?;
    let last: u16 = last.parse().map_err(|_| bad())?;
    if first == 0 || first > last {
        return Err(format!(
            "port range '{s}' must go from 1 up to at most 65535 (e.g. 50000-50059)"
        ));
    }
    Ok(PortRange { first, last })
}

/// An absolute directory prefix for unix socket paths, such as `/mnt/`.
pub fn parse_path_prefix(s: &str) -> Result<PathBuf, String> {
    if !s.starts_with('/') {
        return Err(format!("unix path prefix '{s}' must be absolute (e.g. /mnt/)"));
    }
    Ok(PathBuf::from(s))
}

/// `8000-8100`, `8080`.
pub fn show_range(r: &PortRange) -> String {
    if r.first == r.last { r.first.to_string() } else { format!("{}-{}", r.first, r.last) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_catalogue_is_valid() {
        let catalogue = Catalogue::embedded().unwrap();
        let peercred = catalogue.get("peercred-enoprotoopt").unwrap();
        assert_eq!(
            peercred.action,
            Action::Getsockopt { level: 1, optname: 17, family: 1, errno: Errno(92) }
        );
        assert!(catalogue.profile(Platform::Wsl1).any(|e| e.quirk.id == "peercred-einval"));
        assert!(catalogue.profile(Platform::Wsl2).all(|e| e.quirk.id != "peercred-einval"));
        for entry in &catalogue.entries {
            assert!(entry.quirk.references.iter().all(|r| r.starts_with("https://")));
        }
    }

    #[test]
    fn bad_entries_are_named() {
        let quirk = |inject: &str| {
            format!(
                "[[quirk]]\nid = \"x\"\ntitle = \"t\"\nplatforms = [\"wsl2\"]\neffect = \"e\"\n\
                 explanation = \"e\"\nreferences = [\"https://x\"]\nconfidence = \"reported\"\n\
                 [quirk.inject]\n{inject}\n"
            )
        };
        let err = Catalogue::parse(&quirk(
            "hook = \"getsockopt\"\nlevel = \"SOL_SOCKET\"\noptname = \"SO_PEERCRD\"\nerrno = \"EINVAL\"",
        ))
        .unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "quirk 'x': 'SO_PEERCRD' is not a known option at SOL_SOCKET"
        );
        let err = Catalogue::parse(&quirk("hook = \"sendmsg\"\nerrno = \"EINVAL\"")).unwrap_err();
        assert!(format!("{err:#}").starts_with("line 10: unknown variant `sendmsg`"), "{err:#}");
        let err =
            Catalogue::parse(&quirk("hook = \"bind\"\nerrno = \"EACCESS\"\nports = [\"80\"]"))
                .unwrap_err();
        assert!(format!("{err:#}").contains("did you mean EACCES?"), "{err:#}");
    }

    #[test]
    fn port_ranges() {
        assert_eq!(parse_port_range("8080"), Ok(PortRange { first: 8080, last: 8080 }));
        assert_eq!(parse_port_range("1-1023"), Ok(PortRange { first: 1, last: 1023 }));
        assert!(parse_port_range("0").is_err());
        assert!(parse_port_range("9-8").is_err());
        assert!(parse_port_range("70000").is_err());
        assert!(parse_path_prefix("mnt/").is_err());
    }
}
