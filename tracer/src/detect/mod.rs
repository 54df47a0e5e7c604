//! The knowledge base at work: rules (data) matched against every event, findings attached to
//! the events that match.

pub mod details;
pub mod env;
pub mod matchers;
pub mod rules;
pub mod system;

use std::collections::{HashMap, HashSet};

use tracer_common::Syscall;

use crate::{
    enrich::FdTable,
    event::{Event, Finding},
};
use env::Environment;
use matchers::{Ctx, Rule};
use rules::RuleSpec;
use system::System;

pub struct Detector {
    /// The rules that apply to this environment, in file order.
    rules: Vec<Rule>,
    env: Environment,
    system: Box<dyn System>,
    initial_net: Option<u32>,
    /// The last traced call on each (pid, fd), for `previous_syscall`.
    previous: HashMap<(u32, i32), Syscall>,
}

impl Detector {
    pub fn new(
        specs: Vec<RuleSpec>,
        env: Environment,
        system: Box<dyn System>,
        initial_net: Option<u32>,
    ) -> Self {
        let rules = specs.into_iter().map(Rule::compile).filter(|r| r.applies_to(&env)).collect();
        Detector { rules, env, system, initial_net, previous: HashMap::new() }
    }

    /// Adds the findings of every matching rule to `ev.anomalies`.
    /// `traced` is the fd table as of this event: what the traced processes hold.
    pub fn detect(&mut self, ev: &mut Event, traced: &FdTable) {
        let fd = ev.args.fd;
        let previous = fd.and_then(|fd| self.previous.get(&(ev.pid, fd)).copied());
        let mut ctx = Ctx::new(&self.env, self.system.as_mut(), traced, self.initial_net, previous);
        let mut fired_groups: HashSet<&str> = HashSet::new();
        for rule in &self.rules {
            // Most rules name one syscall: pass over the others without evaluating them.
            if !rule.may_fire_on(ev.syscall) {
                continue;
            }
            if rule.spec.group.as_deref().is_some_and(|g| fired_groups.contains(g)) {
                continue;
            }
            if !rule.matches(ev, &mut ctx) {
                continue;
            }
            if let Some(group) = &rule.spec.group {
                fired_groups.insert(group);
            }
            let detail = rule.spec.detail.and_then(|d| details::describe(d, ev, &mut ctx));
            if !ev.anomalies.iter().any(|f| f.id == rule.spec.id) {
                ev.anomalies.push(Finding {
                    id: rule.spec.id.clone(),
                    severity: rule.spec.severity.to_string(),
                    title: rule.spec.title.clone(),
                    fix: one_paragraph(&rule.spec.fix),
                    detail,
                });
            }
        }
        if let Some(fd) = fd {
            match ev.syscall {
                Syscall::Close => self.previous.remove(&(ev.pid, fd)),
                syscall => self.previous.insert((ev.pid, fd), syscall),
            };
        }
    }

    /// A process exited: forget its fds.
    pub fn exit(&mut self, pid: u32) {
        self.previous.retain(|(p, _), _| *p != pid);
    }
}

/// Rule texts are wrapped in the file; findings carry them as one line.
pub fn one_paragraph(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
