//! Every known finding's evidence is where it says, and each console log it cites, read by the
//! crash detector, gives a title the finding's regex matches. The regexes are written by hand
//! from what a run printed; this catches one that would never match the report it was written
//! for (an escaped dot too few, a title the detector has since renamed).

use std::path::{Path, PathBuf};

use ccwrig::oracle::crash;
use ccwrig::scenario::{self, KnownFinding};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// (where it is declared, the finding) for every scenario's own, every suite-wide one and
/// the emulator's.
fn known_findings() -> Vec<(String, KnownFinding)> {
    let mut all = Vec::new();
    for dir in ["scenarios", "scenarios/debug", "scenarios/qemu"] {
        let dir = repo().join(dir);
        let scenarios = scenario::load_dir(&dir).unwrap_or_else(|errs| {
            panic!(
                "{}: {}",
                dir.display(),
                errs.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        });
        for s in scenarios {
            if let Some(k) = s.known_finding.clone() {
                all.push((s.name.clone(), k));
            }
        }
        let everywhere = scenario::known_everywhere(&dir).unwrap_or_else(|e| panic!("{e}"));
        for k in everywhere {
            all.push((format!("{}/findings/known.toml", dir.display()), k));
        }
    }
    for k in scenario::known_emulator().unwrap_or_else(|e| panic!("{e}")) {
        all.push(("harness/src/scenario/known_emulator.toml".to_string(), k));
    }
    all
}

#[test]
fn evidence_exists_and_its_console_logs_match_the_title() {
    let findings = known_findings();
    assert!(
        findings.len() >= 10,
        "only {} known findings",
        findings.len()
    );
    let mut checked = 0;
    let mut failures = Vec::new();
    for (owner, k) in &findings {
        let re = regex::Regex::new(&k.title).unwrap_or_else(|e| panic!("{owner}: {e}"));
        for cited in k
            .evidence
            .split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let path = repo().join(cited);
            assert!(path.exists(), "{owner}: evidence {cited} does not exist");
            if !cited.ends_with(".console.log") {
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{owner}: reading {cited}: {e}"));
            let titles: Vec<String> = crash::detect(&text).into_iter().map(|r| r.title).collect();
            // A console that shows a device lost, not a kernel report, is evidence for
            // another oracle.
            if titles.is_empty() {
                continue;
            }
            checked += 1;
            if !titles.iter().any(|t| re.is_match(t)) {
                failures.push(format!(
                    "{owner}: {cited} gives {titles:?}, none matching {:?}",
                    k.title
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        checked >= 8,
        "only {checked} console logs had a kernel report to check"
    );
}
