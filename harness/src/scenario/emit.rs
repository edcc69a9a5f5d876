//! [`Scenario`] -> scenario file text that the parser reads back to an equal scenario. The
//! fuzzer writes its programs this way and the runner copies them into run directories, so the
//! output is meant for people too: steps one per line, operation fields at their defaults left
//! out.

use std::fmt::Write as _;

use ccwrig_proto::Op;
use serde::Deserialize as _;

use super::model::*;
use super::reader::is_bare_key;

pub(crate) fn to_toml(s: &Scenario) -> String {
    let mut out = String::new();
    line(&mut out, "description", &value_str(&s.description));
    if let Some(k) = &s.known_finding {
        let fields = [
            ("title", value_str(&k.title)),
            ("note", value_str(&k.note)),
            ("evidence", value_str(&k.evidence)),
        ];
        line(&mut out, "known_finding", &inline(&fields));
    }
    if s.history.is_empty() {
        body(&mut out, s, "");
        return out;
    }
    // A phased file: every program, the last one included, is a `[[phase]]` table; the
    // description and known finding above are the sequence's.
    for p in s.history.iter().chain(std::iter::once(s)) {
        out.push_str("\n[[phase]]\n");
        line(&mut out, "description", &value_str(&p.description));
        body(&mut out, p, "phase.");
    }
    out
}

/// Everything of a program after its description, each table header under `prefix`.
fn body(out: &mut String, s: &Scenario, prefix: &str) {
    let _ = writeln!(out, "\n[{prefix}machine]");
    if let Some(p) = &s.machine.profile {
        line(out, "profile", &value_str(p.name()));
    }
    out.push_str("devices = [\n");
    for d in &s.machine.devices {
        let _ = writeln!(
            out,
            "  {},",
            inline(&[("id", value_str(&d.id)), ("devno", value_str(&d.devno))])
        );
    }
    out.push_str("]\n");
    if !s.machine.append.is_empty() {
        line(out, "append", &value_str(&s.machine.append));
    }
    if s.machine.nested {
        line(out, "nested", "true");
    }
    if !s.machine.rest.is_default() {
        line(out, "rest", &value_str(s.machine.rest.driver()));
    }

    for st in &s.setup {
        let _ = writeln!(out, "\n[[{prefix}setup]]");
        for (k, v) in step_fields(st) {
            line(out, &k, &v);
        }
    }

    for a in &s.actors {
        let _ = writeln!(out, "\n[{prefix}actors.{}]\nsteps = [", key(&a.name));
        for st in &a.steps {
            let _ = writeln!(out, "  {},", inline(&step_fields(st)));
        }
        out.push_str("]\n");
    }

    let _ = writeln!(out, "\n[{prefix}race]");
    line(out, "repeat", &s.race.repeat.to_string());
    line(
        out,
        "jitter_ms",
        &format!("[{}, {}]", s.race.jitter_ms.0, s.race.jitter_ms.1),
    );
    if let Some(seed) = s.race.seed {
        line(out, "seed", &seed.to_string());
    }

    for st in &s.teardown {
        let _ = writeln!(out, "\n[[{prefix}teardown]]");
        for (k, v) in step_fields(st) {
            line(out, &k, &v);
        }
    }

    let _ = writeln!(out, "\n[{prefix}expect]");
    let e = &s.expect;
    let crash = match &e.crash {
        CrashExpect::None => "none",
        CrashExpect::TitleRegex(r) => r,
    };
    line(out, "crash", &value_str(crash));
    line(out, "dmesg_contains", &string_list(&e.dmesg_contains));
    line(
        out,
        "dmesg_not_contains",
        &string_list(&e.dmesg_not_contains),
    );
    match &e.fsm_violations {
        FsmViolationsExpect::None => line(out, "fsm_violations", "\"none\""),
        FsmViolationsExpect::Rules(r) => {
            let names: Vec<String> = r.iter().map(|r| r.name().to_string()).collect();
            line(out, "fsm_violations", &string_list(&names))
        }
    }
    if !e.fsm_final.is_empty() {
        let fields: Vec<(String, String)> = e
            .fsm_final
            .iter()
            .map(|(k, v)| (k.clone(), value_str(v)))
            .collect();
        line(out, "fsm_final", &inline(&fields));
    }
    let leaks = match e.leaks {
        LeaksExpect::None => "none",
        LeaksExpect::Ignore => "ignore",
    };
    line(out, "leaks", &value_str(leaks));
}

fn line(out: &mut String, k: &str, v: &str) {
    let _ = writeln!(out, "{} = {v}", key(k));
}

fn key(k: &str) -> String {
    if is_bare_key(k) {
        k.to_string()
    } else {
        value_str(k)
    }
}

/// A TOML string literal, escaped by toml itself.
fn value_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn string_list(items: &[String]) -> String {
    let parts: Vec<String> = items.iter().map(|s| value_str(s)).collect();
    format!("[{}]", parts.join(", "))
}

fn inline<K: AsRef<str>>(fields: &[(K, String)]) -> String {
    if fields.is_empty() {
        return "{}".to_string();
    }
    let parts: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{} = {v}", key(k.as_ref())))
        .collect();
    format!("{{ {} }}", parts.join(", "))
}

/// The key = value pairs of a step, `op` first, step-level keys last.
fn step_fields(st: &Step) -> Vec<(String, String)> {
    let st = match st {
        Step::Barrier { name, .. } => return vec![("barrier".into(), value_str(name))],
        Step::Op(st) => st,
    };
    let mut fields = op_fields(&st.op);
    if st.expect != [Expect::Ok] {
        let v = match st.expect.as_slice() {
            [one] => value_str(one.as_str()),
            many => format!(
                "[{}]",
                many.iter()
                    .map(|e| value_str(e.as_str()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        fields.push(("expect".into(), v));
    }
    if let Some(d) = st.deadline_ms {
        fields.push(("deadline_ms".into(), d.to_string()));
    }
    if let Some(i) = st.idle_ms {
        fields.push(("idle_ms".into(), i.to_string()));
    }
    if let Some((lo, hi)) = st.jitter_ms {
        fields.push(("jitter_ms".into(), format!("[{lo}, {hi}]")));
    }
    if let Some(l) = &st.label {
        fields.push(("label".into(), value_str(l)));
    }
    if let Some(n) = st.fail_nth {
        fields.push(("fail_nth".into(), n.to_string()));
    }
    fields
}

/// The operation's own fields through its serde definition, minus those that equal their
/// defaults (a field is a default when the operation reads back the same without it).
fn op_fields(op: &Op) -> Vec<(String, String)> {
    let mut fields = vec![("op".to_string(), value_str(op.name()))];
    let Ok(toml::Value::Table(table)) = toml::Value::try_from(op) else {
        // Every Op serialises to a table; if that ever changes the round-trip test says so.
        return fields;
    };
    let mut kept = table.clone();
    for k in table.keys().filter(|k| *k != "op") {
        let mut without = kept.clone();
        without.remove(k);
        if Op::deserialize(toml::Value::Table(without.clone()))
            .ok()
            .as_ref()
            == Some(op)
        {
            kept = without;
        }
    }
    fields.extend(
        kept.into_iter()
            .filter(|(k, _)| k != "op")
            .map(|(k, v)| (k, v.to_string())),
    );
    fields
}
