//! A rule file (`wsltrace rules --check FILE`, `--rules FILE`): TOML parsing, validation with
//! line numbers, rules made ready to evaluate, and what `wsltrace rules` prints of them.
//! Seeds: the built-in knowledge base and variations of it (`corpus/rule_file`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer::detect::rules::{self, Rule};
use tracer_common::Syscall;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match rules::parse("fuzz.toml", text) {
        Ok(specs) => {
            for spec in specs {
                // `rules --json` and the TOML `when` shown by `rules --id`.
                serde_json::to_string(&spec).expect("a valid rule serializes");
                toml::to_string(&spec.when).ok();
                let rule = Rule::new(spec);
                rule.judges_blocked();
                for id in 0..32 {
                    if let Some(syscall) = Syscall::from_id(id) {
                        rule.may_fire_on(syscall);
                    }
                }
            }
        }
        Err(errors) => {
            let lines = text.matches('\n').count() + 1;
            for err in errors {
                // Every problem points at a line of the file.
                assert!(err.line >= 1 && err.line <= lines, "{err} (the file has {lines} lines)");
                err.to_string();
            }
        }
    }
});
