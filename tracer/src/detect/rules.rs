//! The knowledge base as data: the rule file format, loading and validation, and rules ready
//! to evaluate. The `when` vocabulary is in vocabulary.rs.
//!
//! Every problem is reported as `FILE:LINE: message` so a user can fix their own rule file.

use std::{collections::HashSet, fmt, path::Path};

use serde::{Deserialize, Serialize};
use toml::Spanned;
use tracer_common::Syscall;

pub use super::values::ListenerKind;
use super::{
    env::Environment,
    matchers::Ctx,
    vocabulary::{Matcher, When},
};
use crate::event::Event;
pub use crate::{event::Severity, facts::wsl::WslKind};

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
    /// Read in WSL's own code: the references hold a permalink to the lines, at a commit.
    Source,
}

/// Where a `source` rule's permalinks point: WSL's repository, at a full commit id.
const WSL_BLOB: &str = "https://github.com/microsoft/WSL/blob/";

/// Whether `reference` is a permalink into WSL's sources at a fixed commit:
/// `https://github.com/microsoft/WSL/blob/<40 hex digits>/src/...#L<n>` (or `#L<n>-L<m>`).
/// A branch name or a short id would move or become ambiguous; the line anchor says what was
/// read.
pub fn is_wsl_permalink(reference: &str) -> bool {
    let Some(rest) = reference.strip_prefix(WSL_BLOB) else { return false };
    let Some((commit, rest)) = rest.split_once('/') else { return false };
    let Some((path, anchor)) = rest.split_once("#L") else { return false };
    let line = |n: &str| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit());
    let lines_ok = match anchor.split_once("-L") {
        Some((from, to)) => line(from) && line(to),
        None => line(anchor),
    };
    commit.len() == 40
        && commit.bytes().all(|b| b.is_ascii_hexdigit())
        && path.starts_with("src/")
        && path.len() > "src/".len()
        && lines_ok
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
    /// The listener a connect reaches, with its accept queue and backlog.
    AcceptQueue,
    /// The proxy variable of the caller's environment that names the destination.
    Proxy,
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
        let mut rule = spanned.into_inner();
        if !seen.insert(rule.id.clone()) {
            errors.push(err(
                line,
                format!("rule {}: the id is used twice; ids must be unique", rule.id),
            ));
        }
        for problem in validate(&rule) {
            errors.push(err(line, format!("rule {}: {problem}", rule.id)));
        }
        let tables = [("when", Some(&mut rule.when)), ("unless", rule.unless.as_mut())];
        for (table, when) in tables {
            for problem in when.map(When::take_problems).unwrap_or_default() {
                let place =
                    problem.key.map_or_else(|| table.to_owned(), |k| format!("{table}.{k}"));
                errors.push(err(
                    line_of(text, problem.span.start),
                    format!("rule {}: {place}: {}", rule.id, problem.message),
                ));
            }
        }
        rules.push(rule);
    }
    errors.sort_by_key(|e| e.line);
    if errors.is_empty() { Ok(rules) } else { Err(errors) }
}

/// Checks what the file format alone cannot: ids, platforms, texts. (The `when` and `unless`
/// values were checked as they were read.)
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
    if rule.confidence == Confidence::Source && !rule.references.iter().any(|r| is_wsl_permalink(r))
    {
        problems.push(format!(
            "confidence \"source\" needs a reference to the lines read in WSL's code: {WSL_BLOB}<40-hex commit>/src/...#L<line>"
        ));
    }
    for (field, value) in
        [("title", &rule.title), ("explanation", &rule.explanation), ("fix", &rule.fix)]
    {
        if value.trim().is_empty() {
            problems.push(format!("{field} is empty"));
        }
    }
    problems
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

/// A rule ready to evaluate.
#[derive(Clone, Debug)]
pub struct Rule {
    pub spec: RuleSpec,
    /// Bit n set when the rule can fire on the syscall with id n (its `syscall` matcher allows
    /// it). Evaluating every rule's matchers on every event, each hashing the syscall into its
    /// set, was a fifth of the reader's time at high event rates.
    syscalls: u64,
    /// `blocked = true` is among its matchers (see [`Rule::judges_blocked`]): asked for every
    /// event, so worked out once.
    blocked: bool,
    /// What an event must carry for the rule to fire, from its matchers on the event's
    /// fields: an errno (`errno`), a refusal (`refused_by`). Only those evaluated before any
    /// matcher that reads the system count: skipping the rule then skips no look-up it would
    /// have made.
    needs: Needs,
    /// The fix as one paragraph, as findings carry it: made once, not for every finding.
    pub fix: String,
}

impl Rule {
    pub fn new(spec: RuleSpec) -> Rule {
        let syscalls = spec.when.matchers().iter().fold(u64::MAX, |mask, m| match m {
            Matcher::Syscall(list) => {
                mask & list.0.iter().fold(0, |bits, &s| bits | syscall_bit(s))
            }
            _ => mask,
        });
        let blocked = spec.when.matchers().contains(&Matcher::Blocked(true));
        // Matchers below cost 2 read the event and the environment, nothing else (see
        // `Matcher::cost`).
        let first = spec.when.matchers().iter().take_while(|m| m.cost() < 2);
        let needs = first.fold(Needs::default(), |needs, m| match m {
            Matcher::Errno(_) => Needs { errno: true, ..needs },
            Matcher::RefusedBy(_) => Needs { refused: true, ..needs },
            _ => needs,
        });
        let fix = super::one_paragraph(&spec.fix);
        Rule { spec, syscalls, blocked, needs, fix }
    }

    /// Whether an event with (or without) an errno and a refusal may fire the rule: false
    /// when it would fail its `errno` or `refused_by` matcher.
    pub fn may_fire_with(&self, errno: bool, refused: bool) -> bool {
        (errno || !self.needs.errno) && (refused || !self.needs.refused)
    }

    pub fn applies_to(&self, env: &Environment) -> bool {
        self.spec.platforms.iter().any(|p| match p {
            Platform::Any => true,
            Platform::Linux => env.wsl == WslKind::None,
            Platform::Wsl1 => env.wsl == WslKind::Wsl1,
            Platform::Wsl2 => env.wsl == WslKind::Wsl2,
        })
    }

    /// Whether the rule judges calls still in progress (`blocked = true`) rather than
    /// finished calls: a rule judges one kind or the other, never both.
    pub fn judges_blocked(&self) -> bool {
        self.blocked
    }

    /// Whether the rule can fire on `syscall` at all: false when its `syscall` matcher
    /// leaves it out.
    pub fn may_fire_on(&self, syscall: Syscall) -> bool {
        self.syscalls & syscall_bit(syscall) != 0
    }

    /// Every matcher holds (and not every exception). A fact that cannot be known (offline,
    /// process gone) does not hold.
    pub fn matches(&self, ev: &Event, ctx: &mut Ctx<'_>) -> bool {
        let all = |when: &When, ctx: &mut Ctx<'_>| {
            when.matchers().iter().all(|m| m.holds(ev, ctx) == Some(true))
        };
        all(&self.spec.when, ctx)
            && !self.spec.unless.as_ref().is_some_and(|unless| all(unless, ctx))
    }
}

/// See [`Rule::needs`].
#[derive(Clone, Copy, Debug, Default)]
struct Needs {
    errno: bool,
    refused: bool,
}

/// A syscall's bit in [`Rule::syscalls`]; ids past 63 share every bit (never skipped).
fn syscall_bit(syscall: Syscall) -> u64 {
    1_u64.checked_shl(syscall as u32).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
