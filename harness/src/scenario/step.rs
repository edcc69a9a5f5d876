//! One step: `{ barrier = "x" }` or an operation table (`op = "..."` plus the op's fields) with
//! the step-level keys `expect`, `deadline_ms`, `idle_ms`, `jitter_ms`, `label`, `fail_nth`.
//!
//! The operation itself is read by `Op`'s own serde definition, so the file format cannot drift
//! from the protocol. serde's errors do not carry positions (the enum is internally tagged and
//! buffered), so they are mapped back onto the step's keys here.

use std::ops::Range;

use ccwrig_proto::Op;
use serde::Deserialize as _;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use super::error::Located;
use super::model::{Expect, OpStep, Step};
use super::reader::{self, child, index, SpanMap, TableReader, Value};

pub(crate) const STEP_KEYS: &[&str] = &[
    "expect",
    "deadline_ms",
    "idle_ms",
    "jitter_ms",
    "label",
    "fail_nth",
];

pub(crate) fn parse_step(
    v: &Value<'_>,
    path: &str,
    text: &str,
    spans: &mut SpanMap,
) -> Result<Step, Located> {
    let mut r = TableReader::new(v, path, spans)?;
    let line = super::error::line_col(text, v.span().start).0;
    if r.has("barrier") {
        let name = r.string("barrier", spans)?.unwrap_or_default();
        super::ids::check_name("barrier", &name)
            .map_err(|m| Located::new(Some(v.span()), path, m))?;
        // A barrier is a meeting point and nothing else: an expectation on it would mean nothing.
        r.finish(&["barrier"])?;
        return Ok(Step::Barrier { name, line });
    }
    if !r.has("op") {
        return Err(Located::new(
            Some(v.span()),
            path,
            "a step needs `op = \"...\"` (an operation) or `barrier = \"...\"` (a meeting point)",
        ));
    }

    // Checked here so that a non-string `op` is reported as such, not as a serde type error.
    r.string("op", spans)?;
    let expect = match r.get("expect", spans) {
        None => vec![Expect::Ok],
        Some(e) => parse_expect(e, &child(path, "expect"), spans)?,
    };
    let deadline_ms = positive_ms(&mut r, "deadline_ms", path, spans)?;
    let idle_ms = positive_ms(&mut r, "idle_ms", path, spans)?;
    let jitter_ms = match r.get("jitter_ms", spans) {
        None => None,
        Some(j) => Some(reader::as_range(j, &child(path, "jitter_ms"))?),
    };
    let label = r.string("label", spans)?;
    let fail_nth = match r.u64("fail_nth", spans)? {
        None => None,
        Some(n @ 1..=0xffff) => Some(n as u32),
        Some(_) => {
            return Err(Located::new(
                r.key_span("fail_nth"),
                child(path, "fail_nth"),
                "fail_nth counts fault points from 1 (and stays below 65536)",
            ))
        }
    };

    let DeValue::Table(table) = v.get_ref() else {
        unreachable!("TableReader::new accepted a non-table");
    };
    let mut op_table = DeTable::new();
    for (k, val) in table.iter() {
        if !STEP_KEYS.contains(&k.get_ref().as_ref()) {
            spans.record(&child(path, k.get_ref()), val.span());
            op_table.insert(k.clone(), val.clone());
        }
    }
    let op = deserialize_op(&op_table, v.span(), path)?;
    if idle_ms.is_some() && !op.blocks_only_on_others() {
        return Err(Located::new(
            r.key_span("idle_ms"),
            child(path, "idle_ms"),
            format!(
                "idle_ms is for operations that only wait for other steps; {} waits by design",
                op.name()
            ),
        ));
    }
    Ok(Step::Op(OpStep {
        op,
        expect,
        deadline_ms,
        idle_ms,
        jitter_ms,
        label,
        fail_nth,
        line,
    }))
}

/// A duration key of the step that, when given, must be at least 1 ms.
fn positive_ms(
    r: &mut TableReader<'_, '_>,
    key: &str,
    path: &str,
    spans: &mut SpanMap,
) -> Result<Option<u64>, Located> {
    let ms = r.u64(key, spans)?;
    if ms == Some(0) {
        return Err(Located::new(
            r.key_span(key),
            child(path, key),
            format!("{key} must be at least 1"),
        ));
    }
    Ok(ms)
}

/// `"ok"` or `["ok", "EINVAL"]`.
fn parse_expect(v: &Value<'_>, path: &str, spans: &mut SpanMap) -> Result<Vec<Expect>, Located> {
    let one = |item: &Value<'_>, p: &str| -> Result<Expect, Located> {
        let s = reader::as_string(item, p)?;
        Expect::parse(&s).ok_or_else(|| {
            Located::new(
                Some(item.span()),
                p,
                format!("unknown expectation {s:?}: use \"ok\", \"blocked\", \"failed\", \"any\" or an errno name like \"EINVAL\""),
            )
        })
    };
    match v.get_ref() {
        DeValue::Array(items) => {
            if items.is_empty() {
                return Err(Located::new(
                    Some(v.span()),
                    path,
                    "an empty expect list accepts nothing; use \"any\"",
                ));
            }
            items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let p = index(path, i);
                    spans.record(&p, item.span());
                    one(item, &p)
                })
                .collect()
        }
        _ => Ok(vec![one(v, path)?]),
    }
}

fn deserialize_op(table: &DeTable<'_>, span: Range<usize>, path: &str) -> Result<Op, Located> {
    let attempt = |t: &DeTable<'_>| {
        Op::deserialize(ValueDeserializer::from(Spanned::new(
            span.clone(),
            DeValue::Table(t.clone()),
        )))
        .map_err(|e| e.message().replace('`', "\""))
    };
    let message = match attempt(table) {
        Ok(op) => return Ok(op),
        Err(m) => m,
    };
    let message = suggest_from_serde(message);
    Err(locate_op_error(table, span.clone(), path, message, attempt))
}

/// Points serde's message at the key it is about.
fn locate_op_error(
    table: &DeTable<'_>,
    span: Range<usize>,
    path: &str,
    message: String,
    attempt: impl Fn(&DeTable<'_>) -> Result<Op, String>,
) -> Located {
    let at_key = |key: &str| {
        table
            .get_key_value(key)
            .map(|(k, _)| Located::new(Some(k.span()), path, message.clone()))
    };
    let at_value = |key: &str| {
        table
            .get_key_value(key)
            .map(|(_, v)| Located::new(Some(v.span()), child(path, key), message.clone()))
    };
    if let Some(name) = quoted_after(&message, "unknown field ") {
        if let Some(l) = at_key(&name) {
            return l;
        }
    }
    if message.starts_with("unknown variant") {
        if let Some(l) = at_value("op") {
            return l;
        }
    }
    if message.starts_with("missing field") {
        return Located::new(Some(span), path, message);
    }
    // A wrong type or value names neither the field nor its place. The culprit is the field
    // whose removal makes this message go away.
    let mut keys: Vec<_> = table.iter().filter(|(k, _)| k.get_ref() != "op").collect();
    keys.sort_by_key(|(k, _)| k.span().start);
    for (k, _) in keys {
        let mut without = table.clone();
        without.remove(k.get_ref().as_ref());
        if attempt(&without).err().as_deref() != Some(message.as_str()) {
            if let Some(l) = at_value(k.get_ref()) {
                return l;
            }
        }
    }
    Located::new(Some(span), path, message)
}

/// serde lists the alternatives in its "unknown field/variant" messages; offer the likely one.
fn suggest_from_serde(message: String) -> String {
    let word = quoted_after(&message, "unknown field ")
        .or_else(|| quoted_after(&message, "unknown variant "));
    let (Some(word), Some(i)) = (word, message.find("expected one of")) else {
        return message;
    };
    let tail = message[i..].to_string();
    let candidates: Vec<&str> = tail.split('"').skip(1).step_by(2).collect();
    reader::with_suggestion(message.clone(), &word, &candidates)
}

/// `unknown field "x", expected ...` -> `x`.
fn quoted_after(message: &str, prefix: &str) -> Option<String> {
    let rest = message.strip_prefix(prefix)?.strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(src: &str) -> Result<Step, Located> {
        let doc = format!("s = {src}\n");
        let root = DeTable::parse(&doc).expect("test TOML parses");
        let v = root.get_ref().get("s").expect("s").clone();
        parse_step(&v, "steps[0]", &doc, &mut SpanMap::default())
    }

    #[test]
    fn good_steps() {
        let s = step(r#"{ op = "reset", handle = "d", expect = ["ok", "EINVAL"], deadline_ms = 100, label = "r" }"#)
            .expect("parses");
        let Step::Op(s) = s else {
            panic!("not an op step")
        };
        assert_eq!(s.op, Op::Reset { handle: "d".into() });
        assert_eq!(s.expect, vec![Expect::Ok, Expect::Errno("EINVAL".into())]);
        assert_eq!(s.idle_ms, None);
        let idle = step(r#"{ op = "close", handle = "d", idle_ms = 250 }"#).expect("parses");
        assert!(matches!(
            idle,
            Step::Op(OpStep {
                idle_ms: Some(250),
                ..
            })
        ));
        assert_eq!(s.deadline_ms, Some(100));
        assert_eq!(s.label.as_deref(), Some("r"));
        assert_eq!(s.fail_nth, None);
        let Ok(Step::Op(s)) =
            step(r#"{ op = "reset", handle = "d", fail_nth = 2, expect = "any" }"#)
        else {
            panic!()
        };
        assert_eq!(s.fail_nth, Some(2));
        assert!(matches!(
            step(r#"{ barrier = "b" }"#),
            Ok(Step::Barrier { .. })
        ));
        let Ok(Step::Op(s)) = step(r#"{ op = "sysrq", key = "w", expect = "any" }"#) else {
            panic!()
        };
        assert_eq!(s.expect, vec![Expect::Any]);
    }

    #[test]
    fn bad_steps_point_at_the_culprit() {
        // (step, the text the error points at, message substring)
        let table: &[(&str, &str, &str)] = &[
            (
                r#"{ op = "open", mdev = "m", handel = "d" }"#,
                "handel",
                r#"unknown field "handel""#,
            ),
            (
                r#"{ op = "opne", mdev = "m" }"#,
                r#""opne""#,
                r#"unknown variant "opne""#,
            ),
            (r#"{ op = "reset" }"#, "{ op", r#"missing field "handle""#),
            (
                r#"{ op = "io", handle = "d", count = "many" }"#,
                r#""many""#,
                "invalid type",
            ),
            (
                r#"{ op = "io", handle = "d", suspend = 1, count = 2 }"#,
                "1,",
                "invalid type",
            ),
            (
                r#"{ op = "reset", handle = "d", expect = "EWHAT" }"#,
                r#""EWHAT""#,
                "unknown expectation",
            ),
            (
                r#"{ op = "reset", handle = "d", expect = ["ok", 3] }"#,
                "3]",
                "expected a string",
            ),
            (
                r#"{ op = "reset", handle = "d", jitter_ms = [3, 1] }"#,
                "[3, 1]",
                "lower bound",
            ),
            (
                r#"{ op = "reset", handle = "d", deadline_ms = -1 }"#,
                "-1",
                "non-negative",
            ),
            (
                r#"{ barrier = "b", label = "x" }"#,
                "label",
                r#"unknown field "label""#,
            ),
            (r#"{ handle = "d" }"#, "{ handle", "needs `op"),
            (
                r#"{ op = "reset", handle = "d", fail_nth = 0 }"#,
                "fail_nth",
                "counts fault points from 1",
            ),
            (r#"{ op = 3, handle = "d" }"#, "3,", "expected a string"),
            (
                r#"{ op = "reset", handle = "d", idle_ms = 0 }"#,
                "idle_ms",
                "at least 1",
            ),
            (
                r#"{ op = "io", handle = "d", idle_ms = 100 }"#,
                "idle_ms",
                "io waits by design",
            ),
        ];
        for (src, at, msg) in table {
            let e = step(src).expect_err(src);
            let doc = format!("s = {src}\n");
            let start = e.span.clone().expect("span").start;
            assert!(
                doc[start..].starts_with(at),
                "{src}: points at {:?}: {e:?}",
                &doc[start..]
            );
            assert!(e.message.contains(msg), "{src}: {}", e.message);
        }
    }
}
