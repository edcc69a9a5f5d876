//! Table test of the crash detector over real console logs: every
//! `data/reports/<name>.log` is checked against `<name>.expected`.
//!
//! Sidecar format: the single line `none` for a crash-free log, else one block of
//! `key: value` lines per report, in log order, blocks separated by blank lines. Keys:
//! `title`, `kind`, `guilty` (`-` for none), `alive`. Lines starting with `#` are comments.

use ccwrig::oracle::crash::{detect, CrashReport};
use std::fs;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, PartialEq)]
struct Expected {
    title: String,
    kind: String,
    guilty: Option<String>,
    alive: bool,
}

fn parse_expected(text: &str) -> Result<Vec<Expected>, String> {
    let body: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    if body.iter().filter(|l| !l.is_empty()).eq(["none"].iter()) {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for block in body.split(|l| l.is_empty()).filter(|b| !b.is_empty()) {
        let mut e = Expected::default();
        let mut seen = Vec::new();
        for line in block {
            let (k, v) = line
                .split_once(':')
                .ok_or_else(|| format!("not `key: value`: {line:?}"))?;
            let v = v.trim();
            match k.trim() {
                "title" => e.title = v.to_owned(),
                "kind" => e.kind = v.to_owned(),
                "guilty" => e.guilty = (v != "-").then(|| v.to_owned()),
                "alive" => {
                    e.alive = v
                        .parse()
                        .map_err(|_| format!("alive must be true/false: {v:?}"))?
                }
                other => return Err(format!("unknown key {other:?}")),
            }
            seen.push(k.trim().to_owned());
        }
        for key in ["title", "kind", "guilty", "alive"] {
            if !seen.iter().any(|s| s == key) {
                return Err(format!("block without `{key}`: {block:?}"));
            }
        }
        out.push(e);
    }
    Ok(out)
}

fn actual(r: &CrashReport) -> Expected {
    Expected {
        title: r.title.clone(),
        kind: r.kind.as_str().to_owned(),
        guilty: r.guilty.clone(),
        alive: r.alive,
    }
}

fn render(es: &[Expected]) -> String {
    if es.is_empty() {
        return "none\n".into();
    }
    es.iter()
        .map(|e| {
            format!(
                "title: {}\nkind: {}\nguilty: {}\nalive: {}\n",
                e.title,
                e.kind,
                e.guilty.as_deref().unwrap_or("-"),
                e.alive
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/reports")
}

fn check_one(log: &Path) -> Result<(), String> {
    let name = log.display();
    let expected_path = log.with_extension("expected");
    let text = fs::read(log).map_err(|e| format!("{name}: {e}"))?;
    let text = String::from_utf8_lossy(&text);
    let got: Vec<Expected> = detect(&text).iter().map(actual).collect();
    let want = fs::read_to_string(&expected_path)
        .map_err(|e| format!("{}: {e}", expected_path.display()))
        .and_then(|t| {
            parse_expected(&t).map_err(|e| format!("{}: {e}", expected_path.display()))
        })?;
    if got == want {
        Ok(())
    } else {
        Err(format!(
            "{name}: detector disagrees with {}\n--- expected\n{}--- actual\n{}",
            expected_path.display(),
            render(&want),
            render(&got)
        ))
    }
}

#[test]
fn every_log_matches_its_sidecar() {
    let mut logs: Vec<PathBuf> = fs::read_dir(corpus_dir())
        .expect("corpus directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    assert!(!logs.is_empty(), "no logs in {}", corpus_dir().display());
    let failures: Vec<String> = logs.iter().filter_map(|l| check_one(l).err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} corpus logs failed:\n\n{}",
        failures.len(),
        logs.len(),
        failures.join("\n")
    );
}

#[test]
fn corpus_has_breadth() {
    // A ratchet on the corpus: real logs of many kinds, and crash-free ones with the benign
    // lines that must not trigger. Raise the numbers as logs are added (the LKDTM kernel of
    // data/reports/README.md reached 20 logs, 16 kinds, 7 crash-free).
    let mut kinds = std::collections::BTreeSet::new();
    let mut clean = 0;
    let mut total = 0;
    for e in fs::read_dir(corpus_dir())
        .expect("corpus directory")
        .flatten()
    {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "expected") {
            total += 1;
            let want = parse_expected(&fs::read_to_string(&p).expect("sidecar")).expect("sidecar");
            if want.is_empty() {
                clean += 1;
            }
            kinds.extend(want.into_iter().map(|w| w.kind));
        }
    }
    assert!(total >= 20, "only {total} corpus logs");
    assert!(clean >= 7, "only {clean} crash-free logs");
    assert!(kinds.len() >= 16, "only kinds {kinds:?}");
}

#[test]
fn sidecar_parser() {
    assert_eq!(parse_expected("none\n"), Ok(vec![]));
    assert_eq!(
        parse_expected("# c\ntitle: t\nkind: oops\nguilty: -\nalive: false\n\ntitle: u\nkind: bug\nguilty: f\nalive: true\n")
            .map(|v| v.len()),
        Ok(2)
    );
    assert!(parse_expected("title: t\n").is_err());
}

/// `data/fsm/<name>.trace` against `<name>.expected` (see `data/fsm/README.md`).
#[test]
fn every_fsm_trace_matches_its_sidecar() {
    use ccwrig::oracle::fsm::{check, map_for_version};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fsm");
    let mut traces: Vec<PathBuf> = fs::read_dir(&dir)
        .expect("fsm corpus directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "trace"))
        .collect();
    traces.sort();
    assert!(!traces.is_empty());
    let mut failures = Vec::new();
    for t in &traces {
        let exp_path = t.with_extension("expected");
        let (Ok(trace), Ok(exp)) = (fs::read_to_string(t), fs::read_to_string(&exp_path)) else {
            failures.push(format!("{}: trace or sidecar unreadable", t.display()));
            continue;
        };
        let mut version = (6, 12);
        let mut want_final = Vec::new();
        let mut want_rules = Vec::new();
        let mut want_lost = Some(0u64);
        for line in exp
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        {
            if let Some(v) = line.strip_prefix("version: ") {
                let mut it = v.trim().split('.').filter_map(|n| n.parse().ok());
                version = (it.next().unwrap_or(0), it.next().unwrap_or(0));
            } else if let Some(f) = line.strip_prefix("final ") {
                if let Some((s, st)) = f.split_once(": ") {
                    want_final.push((s.to_owned(), st.trim().to_owned()));
                }
            } else if let Some(r) = line.strip_prefix("violation: ") {
                want_rules.push(r.trim().to_owned());
            } else if let Some(n) = line.strip_prefix("lost: ") {
                want_lost = n.trim().parse().ok();
            }
        }
        let Some(map) = map_for_version(version.0, version.1) else {
            failures.push(format!("{}: no map for {version:?}", exp_path.display()));
            continue;
        };
        let report = check(trace.lines(), map);
        let got_rules: Vec<String> = report
            .violations
            .iter()
            .filter_map(|v| serde_json::to_value(v.rule).ok())
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        let got_final: Vec<(String, String)> = report.final_states.clone().into_iter().collect();
        let got_lost = report.lost_total();
        if got_rules != want_rules || got_final != want_final || got_lost != want_lost {
            failures.push(format!(
                "{}: expected final {want_final:?} violations {want_rules:?} lost {want_lost:?}, got final {got_final:?} violations {got_rules:?} lost {got_lost:?}\n{}",
                t.display(),
                ccwrig::oracle::fsm::render(&report)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
