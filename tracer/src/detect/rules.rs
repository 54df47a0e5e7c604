//! The knowledge base as data: the rule file format, loading and validation.
//!
//! Every problem is reported as `FILE:LINE: message` so a user can fix their own rule file.

use std::{collections::HashSet, fmt, path::Path};

use serde::{Deserialize, Serialize};
use toml::Spanned;

pub use crate::facts::wsl::WslKind;
use crate::{
    decode::{errno::Errno, names},
    event::RefusedBy,
};

/// The knowledge base shipped in the binary.
pub const BUILTIN: &str = include_str!("../../rules/knowledge.toml");
pub const BUILTIN_NAME: &str = "built-in knowledge.toml";
const SCHEMA: u32 = 1;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    schema: u32,
    #[serde(default)]
    rule: Vec<Spanned<RuleSpec>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Stable identifier, e.g. `PEERCRED-UNAVAILABLE`: never reuse one for another meaning.
    pub id: String,
    pub title: String,
    pub severity: Severity,
    pub platforms: Vec<Platform>,
    pub confidence: Confidence,
    pub explanation: String,
    pub fix: String,
    #[serde(default)]
    pub references: Vec<String>,
    /// Among the rules of a group only the first that matches fires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Detail>,
    pub when: When,
    /// Exceptions: the rule does not fire when these all match (e.g. a well-known probe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unless: Option<When>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Any,
    Linux,
    Wsl1,
    Wsl2,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    /// Reproduced on a real system.
    Verified,
    /// From third-party reports.
    Reported,
}

/// What a finding says about its occurrence, computed when the rule fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detail {
    /// What listens on the destination port: other addresses, other namespaces, or nothing.
    Listeners,
    /// Who holds the address a bind wanted.
    PortHolder,
    /// The state of a unix socket path: missing, not a socket, stale, listener elsewhere.
    UnixTarget,
    /// The caller's network namespace.
    Netns,
    /// The addresses the caller's network namespace has.
    Addresses,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AddrClass {
    Loopback4,
    Loopback6,
    Any4,
    Any6,
    Specific,
    UnixPath,
    UnixAbstract,
    Unnamed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetnsKind {
    Initial,
    Private,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListenerKind {
    /// A listener covers the destination address itself.
    Here,
    /// The port listens in the caller's namespace, on other addresses only.
    OtherAddress,
    /// The port listens only in other network namespaces.
    OtherNetns,
    /// Nothing listens on the port anywhere wsltrace can see.
    None,
}

/// The conditions of a rule; absent ones do not constrain.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct When {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syscall: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optname: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sock_type: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sock_flags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr_class: Option<Vec<AddrClass>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below_unprivileged_port: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_fstype: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir_writable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_syscall: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lacks_capability: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<NetnsKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener: Option<Vec<ListenerKind>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wsl: Option<Vec<WslKind>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networking_mode: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nameserver: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused_by: Option<Vec<RefusedBy>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_held: Option<bool>,
}

/// A problem in a rule file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Parses and validates one rule file. All problems are returned, not just the first.
pub fn parse(file: &str, text: &str) -> Result<Vec<RuleSpec>, Vec<RuleError>> {
    let err = |line: usize, message: String| RuleError { file: file.to_owned(), line, message };
    let parsed: RuleFile = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(1, |span| line_of(text, span.start));
        vec![err(line, e.message().trim().to_owned())]
    })?;
    if parsed.schema > SCHEMA {
        return Err(vec![err(
            1,
            format!(
                "schema {} is newer than this wsltrace understands ({SCHEMA}): upgrade wsltrace",
                parsed.schema
            ),
        )]);
    }
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    let mut rules = Vec::new();
    for spanned in parsed.rule {
        let line = line_of(text, spanned.span().start);
        let rule = spanned.into_inner();
        if !seen.insert(rule.id.clone()) {
            errors.push(err(
                line,
                format!("rule {}: the id is used twice; ids must be unique", rule.id),
            ));
        }
        for problem in validate(&rule) {
            errors.push(err(line, format!("rule {}: {problem}", rule.id)));
        }
        rules.push(rule);
    }
    if errors.is_empty() { Ok(rules) } else { Err(errors) }
}

/// Checks every name a rule uses against what wsltrace knows.
fn validate(rule: &RuleSpec) -> Vec<String> {
    let mut problems = Vec::new();
    let id_ok = !rule.id.is_empty()
        && rule.id.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-');
    if !id_ok {
        problems.push(format!("id {:?} must be upper-case letters, digits and dashes", rule.id));
    }
    if rule.platforms.is_empty() {
        problems.push("platforms is empty: use [\"any\"]".into());
    }
    for (field, value) in
        [("title", &rule.title), ("explanation", &rule.explanation), ("fix", &rule.fix)]
    {
        if value.trim().is_empty() {
            problems.push(format!("{field} is empty"));
        }
    }
    problems.extend(validate_when("when", &rule.when));
    if let Some(unless) = &rule.unless {
        problems.extend(validate_when("unless", unless));
    }
    problems
}

/// Checks the names one `when` (or `unless`) table uses.
fn validate_when(table: &str, w: &When) -> Vec<String> {
    let mut problems = Vec::new();
    let mut check =
        |field: &str, values: &Option<Vec<String>>, known: &dyn Fn(&str) -> Result<(), String>| {
            for value in values.iter().flatten() {
                if let Err(why) = known(value) {
                    problems.push(format!("{table}.{field}: {why}"));
                }
            }
        };
    let in_table = |tables: &[names::Table], what: &'static str| {
        let tables = tables.to_vec();
        move |v: &str| {
            if tables.iter().any(|t| t.iter().any(|(_, n)| *n == v)) {
                Ok(())
            } else {
                Err(format!("unknown {what} '{v}'{}", suggestion(v, &tables)))
            }
        }
    };
    check("syscall", &w.syscall, &|v| {
        names::syscall_by_name(v).map(drop).ok_or_else(|| format!("unknown syscall '{v}'"))
    });
    check("previous_syscall", &w.previous_syscall, &|v| {
        names::syscall_by_name(v).map(drop).ok_or_else(|| format!("unknown syscall '{v}'"))
    });
    check("errno", &w.errno, &|v| Errno::parse(v).map(drop));
    check("level", &w.level, &in_table(&[names::LEVELS], "level"));
    let options = [
        names::SOCKET_OPTIONS,
        names::TCP_OPTIONS,
        names::IP_OPTIONS,
        names::IPV6_OPTIONS,
        names::UDP_OPTIONS,
        names::NETLINK_OPTIONS,
    ];
    check("optname", &w.optname, &in_table(&options, "option"));
    check("family", &w.family, &in_table(&[names::FAMILIES], "address family"));
    check("sock_type", &w.sock_type, &in_table(&[names::SOCK_TYPES], "socket type"));
    check("sock_flags", &w.sock_flags, &in_table(&[names::SOCK_FLAGS], "socket flag"));
    check("lacks_capability", &w.lacks_capability, &in_table(&[names::CAPABILITIES], "capability"));
    check("addr", &w.addr, &|v| {
        v.parse::<std::net::SocketAddr>()
            .map(drop)
            .map_err(|_| format!("'{v}' is not ip:port (e.g. 127.0.0.53:53 or [::1]:53)"))
    });
    check("nameserver", &w.nameserver, &|v| {
        v.parse::<std::net::IpAddr>().map(drop).map_err(|_| format!("'{v}' is not an IP address"))
    });
    if let Some(range) = &w.port
        && parse_port_range(range).is_none()
    {
        problems.push(format!("{table}.port: '{range}' is not a port range like 1-1023 or 8080"));
    }
    problems
}

fn suggestion(value: &str, tables: &[names::Table]) -> String {
    tables
        .iter()
        .flat_map(|t| t.iter())
        .map(|(_, name)| (strsim::levenshtein(name, value), *name))
        .min()
        .filter(|(distance, _)| *distance <= 2)
        .map(|(_, name)| format!(" (did you mean {name}?)"))
        .unwrap_or_default()
}

/// `1-1023` or `8080`.
pub fn parse_port_range(range: &str) -> Option<(u16, u16)> {
    match range.split_once('-') {
        Some((lo, hi)) => {
            let (lo, hi) = (lo.trim().parse().ok()?, hi.trim().parse().ok()?);
            (lo <= hi).then_some((lo, hi))
        }
        None => range.trim().parse().ok().map(|p| (p, p)),
    }
}

/// The built-in rules, then each user file in order; a user rule replaces a built-in one with
/// the same id.
pub fn load(extra: &[std::path::PathBuf]) -> Result<Vec<RuleSpec>, Vec<RuleError>> {
    let mut rules = parse(BUILTIN_NAME, BUILTIN)?;
    for path in extra {
        for rule in read(path)? {
            match rules.iter_mut().find(|r| r.id == rule.id) {
                Some(existing) => *existing = rule,
                None => rules.push(rule),
            }
        }
    }
    Ok(rules)
}

pub fn read(path: &Path) -> Result<Vec<RuleSpec>, Vec<RuleError>> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![RuleError {
            file: name.clone(),
            line: 1,
            message: format!("cannot read the rule file: {e}"),
        }]
    })?;
    parse(&name, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_rules_are_valid() {
        let rules = parse(BUILTIN_NAME, BUILTIN).unwrap_or_else(|errors| {
            panic!("{}", errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))
        });
        assert!(rules.len() >= 10);
        for rule in &rules {
            assert!(!rule.references.is_empty(), "{} cites no reference", rule.id);
        }
    }

    #[test]
    fn errors_name_the_line_and_the_fix() {
        let text = "schema = 1\n\n[[rule]]\nid = \"MY-RULE\"\ntitle = \"t\"\nseverity = \"info\"\nplatforms = [\"any\"]\nconfidence = \"reported\"\nexplanation = \"e\"\nfix = \"f\"\n[rule.when]\nerrno = [\"ECONNREFUSD\"]\nsyscall = [\"conect\"]\nlevel = [\"SOL_SOCKT\"]\n";
        let errors = parse("mine.toml", text).unwrap_err();
        let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 3, "{messages:?}");
        assert!(
            messages[0]
                .starts_with("mine.toml:3: rule MY-RULE: when.syscall: unknown syscall 'conect'"),
            "{messages:?}"
        );
        assert!(messages.iter().any(|m| m.contains("did you mean ECONNREFUSED?")));
        assert!(messages.iter().any(|m| m.contains("did you mean SOL_SOCKET?")));
    }

    #[test]
    fn syntax_and_unknown_fields_are_line_numbered() {
        let err = parse("x.toml", "schema = 1\n[[rule]]\nid = \n").unwrap_err();
        assert_eq!(err[0].line, 3, "{}", err[0]);
        let text = "schema = 1\n[[rule]]\nid = \"A\"\ntitle = \"t\"\nseverity = \"info\"\nplatforms = [\"any\"]\nconfidence = \"reported\"\nexplanation = \"e\"\nfix = \"f\"\n[rule.when]\nsyscal = [\"bind\"]\n";
        let err = parse("x.toml", text).unwrap_err();
        assert_eq!(err[0].line, 11, "{}", err[0]);
        assert!(err[0].message.contains("syscal"), "{}", err[0]);
    }

    #[test]
    fn duplicate_ids_and_newer_schemas_are_refused() {
        let rule = "[[rule]]\nid = \"A\"\ntitle = \"t\"\nseverity = \"info\"\nplatforms = [\"any\"]\nconfidence = \"reported\"\nexplanation = \"e\"\nfix = \"f\"\n[rule.when]\n";
        let err = parse("x.toml", &format!("schema = 1\n{rule}{rule}")).unwrap_err();
        assert!(err[0].message.contains("used twice"), "{}", err[0]);
        let err = parse("x.toml", "schema = 9\n").unwrap_err();
        assert!(err[0].message.contains("upgrade wsltrace"));
    }

    #[test]
    fn port_ranges() {
        assert_eq!(parse_port_range("1-1023"), Some((1, 1023)));
        assert_eq!(parse_port_range("8080"), Some((8080, 8080)));
        assert_eq!(parse_port_range("9-1"), None);
    }
}
