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
}

impl Rule {
    pub fn new(spec: RuleSpec) -> Rule {
        let syscalls = spec.when.matchers().iter().fold(u64::MAX, |mask, m| match m {
            Matcher::Syscall(list) => {
                mask & list.0.iter().fold(0, |bits, &s| bits | syscall_bit(s))
            }
            _ => mask,
        });
        Rule { spec, syscalls }
    }

    pub fn applies_to(&self, env: &Environment) -> bool {
        self.spec.platforms.iter().any(|p| match p {
            Platform::Any => true,
            Platform::Linux => env.wsl == WslKind::None,
            Platform::Wsl1 => env.wsl == WslKind::Wsl1,
            Platform::Wsl2 => env.wsl == WslKind::Wsl2,
        })
    }

    /// Whether the rule can fire on `syscall` at all: false when its `syscall` matcher
    /// leaves it out.
    /// Whether the rule judges calls still in progress (`blocked = true`) rather than
    /// finished calls: a rule judges one kind or the other, never both.
    pub fn judges_blocked(&self) -> bool {
        self.spec.when.matchers().contains(&Matcher::Blocked(true))
    }

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

/// A syscall's bit in [`Rule::syscalls`]; ids past 63 share every bit (never skipped).
fn syscall_bit(syscall: Syscall) -> u64 {
    1_u64.checked_shl(syscall as u32).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(errors: &[RuleError]) -> Vec<String> {
        errors.iter().map(ToString::to_string).collect()
    }

    /// A rule file with one rule whose `when` table is `when`, from line 12 on.
    fn with_when(when: &str) -> String {
        format!(
            "schema = 1\n\n[[rule]]\nid = \"MY-RULE\"\ntitle = \"t\"\nseverity = \"info\"\nplatforms = [\"any\"]\nconfidence = \"reported\"\nexplanation = \"e\"\nfix = \"f\"\n[rule.when]\n{when}"
        )
    }

    #[test]
    fn the_builtin_rules_are_valid() {
        let rules = parse(BUILTIN_NAME, BUILTIN)
            .unwrap_or_else(|errors| panic!("{}", messages(&errors).join("\n")));
        assert!(rules.len() >= 10);
        for rule in &rules {
            assert!(!rule.references.is_empty(), "{} cites no reference", rule.id);
            // The last sentence says what the rule rests on.
            let flat = super::super::one_paragraph(&rule.explanation);
            let rests = flat.rfind("Rests on: ").map(|at| &flat[at..]);
            assert!(
                rests.is_some_and(|r| r.ends_with('.') && !r[..r.len() - 1].contains(". ")),
                "{}: the explanation does not end with one sentence saying what it rests on",
                rule.id
            );
        }
    }

    /// No key is dropped on the way and each reads back as written: what `rules --format
    /// json` shows is the file.
    #[test]
    fn every_builtin_matcher_compiles_and_reads_back_as_written() {
        let raw: toml::Table = toml::from_str(BUILTIN).unwrap();
        let raw_rules = raw["rule"].as_array().unwrap();
        let rules = parse(BUILTIN_NAME, BUILTIN).unwrap();
        assert_eq!(raw_rules.len(), rules.len());
        for (raw, rule) in raw_rules.iter().zip(&rules) {
            for (table, when) in [("when", Some(&rule.when)), ("unless", rule.unless.as_ref())] {
                let Some(written) = raw.get(table) else {
                    assert!(when.is_none(), "{}: {table} appeared", rule.id);
                    continue;
                };
                let when = when.unwrap();
                let written = written.as_table().unwrap();
                assert_eq!(when.matchers().len(), written.len(), "{}: {table}", rule.id);
                let shown = serde_json::to_value(when).unwrap();
                let written = serde_json::to_value(written).unwrap();
                assert_eq!(shown, written, "{}: {table}", rule.id);
            }
        }
    }

    #[test]
    fn bad_names_are_all_reported_on_their_lines() {
        let text = with_when(
            "errno = [\"ECONNREFUSD\"]\nsyscall = [\"conect\"]\nlevel = [\"SOL_SOCKT\"]\n",
        );
        let errors = parse("mine.toml", &text).unwrap_err();
        assert_eq!(
            messages(&errors),
            [
                "mine.toml:12: rule MY-RULE: when.errno: unknown errno name 'ECONNREFUSD' (did you mean ECONNREFUSED?): use a name like ECONNREFUSED or a number",
                "mine.toml:13: rule MY-RULE: when.syscall: unknown syscall 'conect' (did you mean connect?)",
                "mine.toml:14: rule MY-RULE: when.level: unknown level 'SOL_SOCKT' (did you mean SOL_SOCKET?)",
            ]
        );
    }

    #[test]
    fn a_bad_key_is_line_numbered() {
        let errors =
            parse("x.toml", &with_when("syscall = [\"bind\"]\nsyscal = [\"bind\"]\n")).unwrap_err();
        assert_eq!(
            messages(&errors),
            ["x.toml:13: rule MY-RULE: when: unknown matcher 'syscal' (did you mean syscall?)"]
        );
        let text = format!("{}[rule.unless]\naddr = [\"localhost\"]\n", with_when(""));
        let errors = parse("x.toml", &text).unwrap_err();
        assert_eq!(
            messages(&errors),
            [
                "x.toml:13: rule MY-RULE: unless.addr: 'localhost' is not ip:port (e.g. 127.0.0.53:53 or [::1]:53)"
            ]
        );
    }

    #[test]
    fn a_bad_value_type_is_line_numbered() {
        let text = with_when("failed = \"yes\"\nsyscall = \"bind\"\nport = \"80-1\"\n");
        let errors = parse("x.toml", &text).unwrap_err();
        let messages = messages(&errors);
        assert_eq!(messages.len(), 3, "{messages:?}");
        assert!(
            messages[0].starts_with("x.toml:12: rule MY-RULE: when.failed: invalid type: string")
        );
        assert!(
            messages[1].starts_with("x.toml:13: rule MY-RULE: when.syscall: invalid type: string")
        );
        assert_eq!(
            messages[2],
            "x.toml:14: rule MY-RULE: when.port: '80-1' is not a port range like 1-1023 or 8080"
        );
    }

    #[test]
    fn syntax_errors_and_unknown_rule_fields_are_line_numbered() {
        let err = parse("x.toml", "schema = 1\n[[rule]]\nid = \n").unwrap_err();
        assert_eq!(err[0].line, 3, "{}", err[0]);
        let text = with_when("").replace("severity", "severty");
        let err = parse("x.toml", &text).unwrap_err();
        assert_eq!(err[0].line, 6, "{}", err[0]);
        assert!(err[0].message.contains("severty"), "{}", err[0]);
    }

    #[test]
    fn permalinks_into_wsl_sources() {
        let commit = "3e27a6a50177ce4e32e72f7b957aef5db5768062";
        for good in [
            format!("{WSL_BLOB}{commit}/src/linux/init/localhost.cpp#L226"),
            format!("{WSL_BLOB}{commit}/src/windows/wslrelay/localhost.cpp#L64-L73"),
        ] {
            assert!(is_wsl_permalink(&good), "{good}");
        }
        for bad in [
            format!("{WSL_BLOB}master/src/linux/init/localhost.cpp#L226"),
            format!("{WSL_BLOB}3e27a6a5/src/linux/init/localhost.cpp#L226"),
            format!("{WSL_BLOB}{commit}/src/linux/init/localhost.cpp"),
            format!("{WSL_BLOB}{commit}/README.md#L1"),
            format!("{WSL_BLOB}{commit}/src/x.cpp#Lx"),
            "https://github.com/microsoft/WSL/issues/10855".to_owned(),
        ] {
            assert!(!is_wsl_permalink(&bad), "{bad}");
        }
    }

    /// A `source` rule without a permalink is refused, on the rule's line.
    #[test]
    fn source_rules_need_a_permalink() {
        let text = with_when("").replace("\"reported\"", "\"source\"");
        let errors = parse("x.toml", &text).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].line, 3);
        assert!(errors[0].message.contains("needs a reference to the lines"), "{}", errors[0]);
        let text = text.replace(
            "[rule.when]",
            "references = [\"https://github.com/microsoft/WSL/blob/3e27a6a50177ce4e32e72f7b957aef5db5768062/src/linux/init/main.cpp#L3333\"]\n[rule.when]",
        );
        assert_eq!(parse("x.toml", &text).unwrap()[0].confidence, Confidence::Source);
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
    fn rules_say_which_syscalls_they_can_fire_on() {
        let rules: Vec<Rule> =
            parse(BUILTIN_NAME, BUILTIN).unwrap().into_iter().map(Rule::new).collect();
        let refused = rules.iter().find(|r| r.spec.id == "CONNECT-REFUSED").unwrap();
        assert!(refused.may_fire_on(Syscall::Connect));
        assert!(!refused.may_fire_on(Syscall::Bind));
        assert!(!refused.may_fire_on(Syscall::Close));
        let anywhere = Rule::new(RuleSpec { when: When::default(), ..refused.spec.clone() });
        assert!(Syscall::ALL.iter().all(|&s| anywhere.may_fire_on(s)));
    }
}
