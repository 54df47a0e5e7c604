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
    let text =
        with_when("errno = [\"ECONNREFUSD\"]\nsyscall = [\"conect\"]\nlevel = [\"SOL_SOCKT\"]\n");
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
    assert!(messages[0].starts_with("x.toml:12: rule MY-RULE: when.failed: invalid type: string"));
    assert!(messages[1].starts_with("x.toml:13: rule MY-RULE: when.syscall: invalid type: string"));
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
