//! Strict, located reading of a spanned TOML tree: every value read is typed on the spot,
//! every key not read is an error, and every error carries the byte span of what is wrong.
//! The spans of everything read are kept by field path so that checks made later on the
//! finished model can still point into the file.

use std::collections::BTreeMap;
use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::error::Located;

pub(crate) type Value<'i> = Spanned<DeValue<'i>>;

/// Byte spans by field path (`actors.user.steps[2].handle`).
#[derive(Debug, Default, Clone)]
pub(crate) struct SpanMap(BTreeMap<String, Range<usize>>);

impl SpanMap {
    pub fn record(&mut self, path: &str, span: Range<usize>) {
        self.0.entry(path.to_string()).or_insert(span);
    }

    /// The span of `path`, or of the nearest enclosing field that has one.
    pub fn find(&self, path: &str) -> Option<Range<usize>> {
        let mut p = path;
        loop {
            if let Some(s) = self.0.get(p) {
                return Some(s.clone());
            }
            p = parent(p)?;
        }
    }
}

/// `a.b[2].c` -> `a.b[2]` -> `a.b` -> `a` -> None.
fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    match path.rfind(['.', '[']) {
        Some(i) => Some(&path[..i]),
        None => Some(""),
    }
}

/// The path of `key` inside `path`; keys that are not plain words are quoted, as in TOML.
pub(crate) fn child(path: &str, key: &str) -> String {
    let k = if is_bare_key(key) {
        key.to_string()
    } else {
        format!("{key:?}")
    };
    if path.is_empty() {
        k
    } else {
        format!("{path}.{k}")
    }
}

pub(crate) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

pub(crate) fn is_bare_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

pub(crate) fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// Quoted, comma-separated, for "expected one of" lists.
pub(crate) fn one_of(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads one table. Keys are consumed by the typed getters; `finish` rejects the rest.
pub(crate) struct TableReader<'t, 'i> {
    table: &'t DeTable<'i>,
    pub span: Range<usize>,
    pub path: String,
    used: Vec<&'t str>,
}

impl<'t, 'i> TableReader<'t, 'i> {
    /// `value` must be a table; the error names what it is instead.
    pub fn new(value: &'t Value<'i>, path: &str, spans: &mut SpanMap) -> Result<Self, Located> {
        match value.get_ref() {
            DeValue::Table(t) => {
                spans.record(path, value.span());
                Ok(Self::of(t, value.span(), path))
            }
            other => Err(Located::new(
                Some(value.span()),
                path,
                format!("expected a table, found {}", type_name(other)),
            )),
        }
    }

    pub fn of(table: &'t DeTable<'i>, span: Range<usize>, path: &str) -> Self {
        TableReader {
            table,
            span,
            path: path.to_string(),
            used: Vec::new(),
        }
    }

    /// Entries in file order (the map itself is ordered by key).
    pub fn entries(&self) -> Vec<(&'t Spanned<std::borrow::Cow<'i, str>>, &'t Value<'i>)> {
        let mut v: Vec<_> = self.table.iter().collect();
        v.sort_by_key(|(k, _)| k.span().start);
        v
    }

    pub fn key_span(&self, key: &str) -> Option<Range<usize>> {
        self.table.get_key_value(key).map(|(k, _)| k.span())
    }

    pub fn has(&self, key: &str) -> bool {
        self.table.contains_key(key)
    }

    pub fn get(&mut self, key: &str, spans: &mut SpanMap) -> Option<&'t Value<'i>> {
        let (k, v) = self.table.get_key_value(key)?;
        self.used.push(k.get_ref().as_ref());
        spans.record(&child(&self.path, key), v.span());
        Some(v)
    }

    pub fn required(&mut self, key: &str, spans: &mut SpanMap) -> Result<&'t Value<'i>, Located> {
        self.get(key, spans).ok_or_else(|| {
            Located::new(
                Some(self.span.clone()),
                &self.path,
                format!("missing field {key:?}"),
            )
        })
    }

    pub fn string(&mut self, key: &str, spans: &mut SpanMap) -> Result<Option<String>, Located> {
        let path = child(&self.path, key);
        self.get(key, spans)
            .map(|v| as_string(v, &path))
            .transpose()
    }

    pub fn u64(&mut self, key: &str, spans: &mut SpanMap) -> Result<Option<u64>, Located> {
        let path = child(&self.path, key);
        self.get(key, spans).map(|v| as_u64(v, &path)).transpose()
    }

    pub fn strings(
        &mut self,
        key: &str,
        spans: &mut SpanMap,
    ) -> Result<Option<Vec<String>>, Located> {
        let path = child(&self.path, key);
        match self.get(key, spans) {
            None => Ok(None),
            Some(v) => {
                let items = as_array(v, &path)?;
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let p = index(&path, i);
                    spans.record(&p, item.span());
                    out.push(as_string(item, &p)?);
                }
                Ok(Some(out))
            }
        }
    }

    /// Rejects keys no getter asked for, naming the first (in file order) and what is allowed.
    pub fn finish(self, allowed: &[&str]) -> Result<(), Located> {
        for (k, _) in self.entries() {
            if !self.used.contains(&k.get_ref().as_ref()) {
                return Err(unknown_field(k.get_ref(), k.span(), &self.path, allowed));
            }
        }
        Ok(())
    }
}

pub(crate) fn unknown_field(
    key: &str,
    span: Range<usize>,
    path: &str,
    allowed: &[&str],
) -> Located {
    let msg = if allowed.is_empty() {
        format!("unknown field {key:?}, there are no fields")
    } else {
        format!("unknown field {key:?}, expected one of {}", one_of(allowed))
    };
    Located::new(Some(span), path, with_suggestion(msg, key, allowed))
}

/// Appends `(did you mean "x"?)` when one candidate is a likely typo of `word`.
pub(crate) fn with_suggestion(msg: String, word: &str, candidates: &[&str]) -> String {
    let best = candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, c)| *d > 0 && *d <= 2.max(c.len() / 4))
        .min_by_key(|(d, _)| *d);
    match best {
        Some((_, c)) => format!("{msg} (did you mean {c:?}?)"),
        None => msg,
    }
}

/// Levenshtein distance with transpositions counted as one edit (`opne` -> `open`).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

pub(crate) fn as_string(v: &Value<'_>, path: &str) -> Result<String, Located> {
    match v.get_ref() {
        DeValue::String(s) => Ok(s.to_string()),
        other => Err(wrong_type(v, path, "a string", other)),
    }
}

pub(crate) fn as_u64(v: &Value<'_>, path: &str) -> Result<u64, Located> {
    use serde::Deserialize as _;
    match v.get_ref() {
        // toml's own integer conversion knows about radixes and underscores.
        DeValue::Integer(i) => u64::deserialize(toml::de::ValueDeserializer::from(v.clone()))
            .map_err(|_| {
                Located::new(
                    Some(v.span()),
                    path,
                    format!("expected a non-negative integer, found {}", i.as_str()),
                )
            }),
        other => Err(wrong_type(v, path, "a non-negative integer", other)),
    }
}

pub(crate) fn as_array<'t, 'i>(v: &'t Value<'i>, path: &str) -> Result<&'t [Value<'i>], Located> {
    match v.get_ref() {
        DeValue::Array(a) => Ok(a),
        other => Err(wrong_type(v, path, "an array", other)),
    }
}

/// `[lo, hi]` of milliseconds.
pub(crate) fn as_range(v: &Value<'_>, path: &str) -> Result<(u64, u64), Located> {
    let items = as_array(v, path)?;
    if items.len() != 2 {
        return Err(Located::new(
            Some(v.span()),
            path,
            format!(
                "expected [lo, hi], found an array of {} elements",
                items.len()
            ),
        ));
    }
    let lo = as_u64(&items[0], path)?;
    let hi = as_u64(&items[1], path)?;
    if lo > hi {
        return Err(Located::new(
            Some(v.span()),
            path,
            format!("lower bound {lo} is above upper bound {hi}"),
        ));
    }
    Ok((lo, hi))
}

fn wrong_type(v: &Value<'_>, path: &str, want: &str, found: &DeValue<'_>) -> Located {
    Located::new(
        Some(v.span()),
        path,
        format!("expected {want}, found {}", type_name(found)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_walk_up() {
        let table = [
            ("a.b[2].c", Some("a.b[2]")),
            ("a.b[2]", Some("a.b")),
            ("a", Some("")),
            ("", None),
        ];
        for (p, want) in table {
            assert_eq!(parent(p), want, "{p}");
        }
    }

    #[test]
    fn suggestions_catch_typos_only() {
        let ops = ["open", "close", "reset", "mdev_remove"];
        let table = [
            ("opne", Some("open")),
            ("clsoe", Some("close")),
            ("mdev_remov", Some("mdev_remove")),
            ("frobnicate", None),
        ];
        for (word, want) in table {
            let got = with_suggestion(String::new(), word, &ops);
            match want {
                Some(w) => assert_eq!(got, format!(" (did you mean {w:?}?)"), "{word}"),
                None => assert_eq!(got, "", "{word}"),
            }
        }
    }

    #[test]
    fn child_quotes_odd_keys() {
        assert_eq!(child("", "machine"), "machine");
        assert_eq!(
            child("expect.fsm_final", "0.0.0000"),
            "expect.fsm_final.\"0.0.0000\""
        );
    }
}
