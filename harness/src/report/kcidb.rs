//! `ccwrig run --kcidb FILE --origin NAME`: KernelCI's KCIDB report data, schema v5.3.
//!
//! - a checkout per kernel source (the pinned package or a tree at its HEAD) and patch series,
//!   with KCIDB's patchset hash of `--patches`;
//! - a build per kernel (its id is the build cache key: the same build inputs are the same
//!   build in every submission);
//! - per scenario a test `ccwrig.<scenario>` and per oracle a test
//!   `ccwrig.<scenario>.<oracle>`: PASS, FAIL (a kernel finding), ERROR (the run started but
//!   could not be judged: the harness failed, or the FSM trace lost events) or MISS (nothing
//!   ran: no kernel);
//! - an issue per deduplicated finding (its id comes from the finding's dedup key, so the same
//!   bug is the same issue in every submission) and an incident per oracle test it showed in.
//!
//! A known finding (a scenario's documented kernel bug) is FAIL with its incident, which is how
//! KCIDB marks a known failure; `misc.known_finding` names it. ccwrig's own exit status counts
//! such a run as passed.
//!
//! Ids are `<origin>:<...>`; tests and incidents carry `run_id`, unique per invocation.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::outcome::{Ending, FindingFacts, KernelFacts, Oracle, ScenarioOutcome};

/// Schema version written (and validated against in the tests).
pub const MAJOR: u64 = 5;
pub const MINOR: u64 = 3;

/// `log_excerpt`'s limit in the schema.
const EXCERPT_MAX: usize = 16384;

/// Who submits and which invocation this is.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The CI system's name (`[a-z0-9_]+`).
    pub origin: String,
    /// Unique per invocation (a UUID).
    pub run_id: String,
}

#[derive(Debug, thiserror::Error)]
#[error("--origin {0:?}: KCIDB origins are lowercase letters, digits and '_'")]
pub struct BadOrigin(pub String);

/// Checks an origin against the schema's pattern.
pub fn check_origin(origin: &str) -> Result<(), BadOrigin> {
    let ok = !origin.is_empty()
        && origin
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(BadOrigin(origin.to_string()))
    }
}

/// A test path component: the schema allows `[a-zA-Z0-9_-]`.
pub fn path_part(s: &str) -> String {
    let p: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if p.is_empty() {
        "unnamed".into()
    } else {
        p
    }
}

fn short_hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())[..16].to_string()
}

/// A string without NUL (every free-text field's pattern), cut to `max` bytes.
fn text(s: &str, max: usize) -> String {
    let s = s.replace('\0', "");
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

fn put(m: &mut Map<String, Value>, k: &str, v: Option<impl Into<Value>>) {
    if let Some(v) = v {
        m.insert(k.to_string(), v.into());
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Status {
    // Declared in KCIDB's priority order, lowest first, so the highest is the max.
    Pass,
    Miss,
    Error,
    Fail,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Miss => "MISS",
            Status::Error => "ERROR",
            Status::Fail => "FAIL",
        }
    }

    fn of_findings(findings: &[&FindingFacts]) -> Status {
        if findings.is_empty() {
            Status::Pass
        } else if findings.iter().all(|f| f.harness_side()) {
            Status::Error
        } else {
            Status::Fail
        }
    }
}

fn checkout_id(origin: &str, k: &KernelFacts) -> String {
    let source = k.source.as_deref().unwrap_or("");
    let head = k.tree_head.as_deref().unwrap_or("");
    let tree = k.tree.as_deref().unwrap_or("");
    format!(
        "{origin}:checkout-{}",
        short_hash(&[source, tree, head, &k.patchset_hash])
    )
}

fn build_id(origin: &str, k: &KernelFacts) -> String {
    format!(
        "{origin}:build-{}",
        &k.build_key[..k.build_key.len().min(32)]
    )
}

fn checkout(origin: &str, k: &KernelFacts) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), checkout_id(origin, k).into());
    m.insert("origin".into(), origin.into());
    let commit = k
        .tree_head
        .as_deref()
        .map(|h| h.trim_end_matches("-dirty"))
        .filter(|h| h.len() == 40 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_ascii_lowercase);
    put(&mut m, "git_commit_hash", commit);
    m.insert("patchset_hash".into(), k.patchset_hash.clone().into());
    let comment = match (&k.tree, &k.source) {
        (Some(t), _) => format!("tree {t}"),
        (None, Some(s)) => s.clone(),
        (None, None) => "a prebuilt kernel of unknown source".into(),
    };
    m.insert("comment".into(), text(&comment, 4096).into());
    m.insert("valid".into(), true.into());
    let mut misc = Map::new();
    put(&mut misc, "tree_head", k.tree_head.clone());
    put(&mut misc, "tree_subject", k.tree_subject.clone());
    put(&mut misc, "patches_from", k.patches_from.clone());
    misc.insert("patches".into(), json!(k.patches));
    m.insert("misc".into(), misc.into());
    m.into()
}

fn build(origin: &str, k: &KernelFacts) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), build_id(origin, k).into());
    m.insert("origin".into(), origin.into());
    m.insert("checkout_id".into(), checkout_id(origin, k).into());
    m.insert("architecture".into(), "s390".into());
    put(
        &mut m,
        "compiler",
        k.compiler.as_deref().map(|c| text(c, 1024)),
    );
    put(&mut m, "config_name", k.profile.clone());
    let mut command = format!(
        "ccwrig kernel build --profile {}",
        k.profile.as_deref().unwrap_or("fast")
    );
    if let Some(t) = &k.tree {
        command.push_str(&format!(" --tree {t}"));
    }
    if let Some(p) = &k.patches_from {
        command.push_str(&format!(" --patches {p}"));
    }
    m.insert("command".into(), text(&command, 4096).into());
    m.insert("status".into(), "PASS".into());
    m.insert(
        "comment".into(),
        format!(
            "Linux {}",
            k.release.as_deref().unwrap_or("of unknown release")
        )
        .into(),
    );
    let mut misc = Map::new();
    put(&mut misc, "release", k.release.clone());
    misc.insert("cache_key".into(), k.build_key.clone().into());
    m.insert("misc".into(), misc.into());
    m.into()
}

/// Renders the whole run as one KCIDB report.
pub fn render(outcomes: &[ScenarioOutcome], sub: &Submission) -> Value {
    let origin = sub.origin.as_str();
    let mut checkouts: BTreeMap<String, Value> = BTreeMap::new();
    let mut builds: BTreeMap<String, Value> = BTreeMap::new();
    let mut tests: Vec<Value> = Vec::new();
    // By issue id: (version 1 issue, first finding seen).
    let mut issues: BTreeMap<String, Value> = BTreeMap::new();
    let mut incidents: Vec<Value> = Vec::new();

    // Scenarios that never got a kernel hang off one stand-in checkout and build, so that
    // every test still names a build.
    let unbuilt = |build_failed: bool, error: &str| -> (Value, Value) {
        let cid = format!("{origin}:{}.unbuilt", sub.run_id);
        let c = json!({
            "id": cid, "origin": origin,
            "comment": "the source of a kernel that was not built",
        });
        let b = json!({
            "id": format!("{origin}:{}.unbuilt", sub.run_id), "origin": origin,
            "checkout_id": cid, "architecture": "s390",
            "status": if build_failed { "FAIL" } else { "MISS" },
            "log_excerpt": text(error, EXCERPT_MAX),
        });
        (c, b)
    };

    for o in outcomes {
        let scenario = path_part(&o.name);
        let build_id = match &o.kernel {
            Some(k) => {
                checkouts
                    .entry(checkout_id(origin, k))
                    .or_insert_with(|| checkout(origin, k));
                let id = build_id(origin, k);
                builds.entry(id.clone()).or_insert_with(|| build(origin, k));
                id
            }
            None => {
                let (error, failed) = match &o.ending {
                    Ending::NotRun {
                        error,
                        build_failed,
                    } => (error.as_str(), *build_failed),
                    Ending::HarnessError { error } => (error.as_str(), false),
                    Ending::Judged { .. } => ("no kernel record in the run directory", false),
                };
                let (c, b) = unbuilt(failed, error);
                let id = b["id"].as_str().unwrap_or_default().to_string();
                checkouts
                    .entry(c["id"].as_str().unwrap_or_default().to_string())
                    .or_insert(c);
                builds.entry(id.clone()).or_insert(b);
                id
            }
        };
        let test_id = |path: &str| format!("{origin}:{}.{path}", sub.run_id);
        let path = format!("ccwrig.{scenario}");
        let mut t = Map::new();
        t.insert("id".into(), test_id(&path).into());
        t.insert("origin".into(), origin.into());
        t.insert("build_id".into(), build_id.clone().into());
        t.insert("path".into(), path.clone().into());
        put(&mut t, "start_time", o.started.clone());
        t.insert(
            "environment".into(),
            json!({"comment": "QEMU TCG s390x guest (ccwrig)"}),
        );
        let mut misc = Map::new();
        put(&mut misc, "scenario_file", o.file.clone());
        put(&mut misc, "artifacts", o.run_dir.clone());

        let status = match &o.ending {
            Ending::Judged {
                passed,
                known_finding,
                findings,
                seed,
                boot_to_ready_ms,
            } => {
                t.insert("duration".into(), json!(o.wall_ms as f64 / 1000.0));
                misc.insert("seed".into(), json!(seed));
                misc.insert("boot_to_ready_ms".into(), json!(boot_to_ready_ms));
                put(&mut misc, "known_finding", known_finding.clone());
                let mut worst = Status::Pass;
                let mut oracles = Oracle::JUDGED.to_vec();
                if findings.iter().any(|f| f.oracle() == Oracle::Other) {
                    oracles.push(Oracle::Other);
                }
                for oracle in oracles {
                    let mine: Vec<&FindingFacts> =
                        findings.iter().filter(|f| f.oracle() == oracle).collect();
                    let st = Status::of_findings(&mine);
                    worst = worst.max(st);
                    let opath = format!("{path}.{}", oracle.name());
                    let oid = test_id(&opath);
                    let mut ot = Map::new();
                    ot.insert("id".into(), oid.clone().into());
                    ot.insert("origin".into(), origin.into());
                    ot.insert("build_id".into(), build_id.clone().into());
                    ot.insert("path".into(), opath.into());
                    put(&mut ot, "start_time", o.started.clone());
                    ot.insert("status".into(), st.as_str().into());
                    if !mine.is_empty() {
                        let excerpt: Vec<String> = mine
                            .iter()
                            .map(|f| format!("{}: {}\n{}", f.kind, f.title, f.detail))
                            .collect();
                        ot.insert(
                            "log_excerpt".into(),
                            text(&excerpt.join("\n\n"), EXCERPT_MAX).into(),
                        );
                        ot.insert("comment".into(), text(&mine[0].title, 4096).into());
                    }
                    tests.push(ot.into());
                    let mut seen: Vec<String> = Vec::new();
                    for f in mine {
                        let iid = format!("{origin}:issue-{}", short_hash(&[&f.key]));
                        issues.entry(iid.clone()).or_insert_with(|| {
                            json!({
                                "id": iid, "origin": origin, "version": 1,
                                "report_subject": text(&f.title, 4096),
                                "comment": text(&f.key, 4096),
                                "culprit": {
                                    "code": !f.harness_side(),
                                    "tool": false,
                                    "harness": f.harness_side(),
                                },
                                "misc": {"kind": f.kind, "key": f.key},
                            })
                        });
                        if seen.contains(&iid) {
                            continue;
                        }
                        seen.push(iid.clone());
                        incidents.push(json!({
                            "id": format!("{oid}.{}", short_hash(&[&f.key])),
                            "origin": origin,
                            "issue_id": iid,
                            "issue_version": 1,
                            "build_id": build_id,
                            "test_id": oid,
                            "present": true,
                            "comment": text(&f.title, 4096),
                            "misc": {"known_finding": known_finding.is_some() && *passed},
                        }));
                    }
                }
                if !passed && worst == Status::Pass {
                    worst = Status::Fail;
                }
                let line = match (passed, known_finding, findings.first()) {
                    (true, Some(k), _) => format!("known finding: {k}"),
                    (true, None, _) => "PASS".to_string(),
                    (false, _, Some(f)) => format!("{}: {}", f.kind, f.title),
                    (false, _, None) => "FAIL".to_string(),
                };
                t.insert("comment".into(), text(&line, 4096).into());
                worst
            }
            Ending::NotRun { error, .. } => {
                t.insert("log_excerpt".into(), text(error, EXCERPT_MAX).into());
                t.insert(
                    "comment".into(),
                    text(error.lines().next().unwrap_or("not run"), 4096).into(),
                );
                Status::Miss
            }
            Ending::HarnessError { error } => {
                t.insert("log_excerpt".into(), text(error, EXCERPT_MAX).into());
                t.insert(
                    "comment".into(),
                    text(error.lines().next().unwrap_or("harness error"), 4096).into(),
                );
                Status::Error
            }
        };
        t.insert("status".into(), status.as_str().into());
        t.insert("misc".into(), misc.into());
        // The scenario's own test before its oracles'.
        let at = tests.len()
            - match &o.ending {
                Ending::Judged { findings, .. } => {
                    Oracle::JUDGED.len()
                        + usize::from(findings.iter().any(|f| f.oracle() == Oracle::Other))
                }
                _ => 0,
            };
        tests.insert(at, t.into());
    }

    json!({
        "version": {"major": MAJOR, "minor": MINOR},
        "checkouts": checkouts.into_values().collect::<Vec<_>>(),
        "builds": builds.into_values().collect::<Vec<_>>(),
        "tests": tests,
        "issues": issues.into_values().collect::<Vec<_>>(),
        "incidents": incidents,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel() -> KernelFacts {
        KernelFacts {
            release: Some("6.12.117".into()),
            profile: Some("fast".into()),
            build_key: "e4ae529f6f9f3a2011dbd261165c1830f7488cfa609835dc73be593cbe788e14".into(),
            source: Some("linux 6.12 (linux-source-6.12=6.12.117-1~deb12u1)".into()),
            patches_from: Some("kernel/patches/seed-notoper-open".into()),
            patches: vec!["0001-x.patch".into()],
            patchset_hash: "181bfcd39665d465e04b91d20c2eb2567bee0f4369e9f5a7d66e7286e6ee9674"
                .into(),
            compiler: Some("s390x-linux-gnu-gcc (Debian 12.2.0-14) 12.2.0".into()),
            ..Default::default()
        }
    }

    fn judged(
        name: &str,
        passed: bool,
        known: Option<&str>,
        f: &[(&str, &str)],
    ) -> ScenarioOutcome {
        ScenarioOutcome {
            name: name.into(),
            file: None,
            run_dir: None,
            started: Some("2026-12-02T10:00:00Z".into()),
            wall_ms: 1500,
            kernel: Some(kernel()),
            ending: Ending::Judged {
                passed,
                known_finding: known.map(str::to_string),
                // The verdict's keys: a leak's ignores the subchannel and the counts.
                findings: f
                    .iter()
                    .map(|(k, t)| match *k {
                        "leak" => FindingFacts::new(k, t, "")
                            .with_key("leak: SCHID available_instances N -> N"),
                        _ => FindingFacts::new(k, t, ""),
                    })
                    .collect(),
                seed: 1,
                boot_to_ready_ms: 2000,
            },
        }
    }

    fn sub() -> Submission {
        Submission {
            origin: "ccwrig_ci".into(),
            run_id: "r1".into(),
        }
    }

    fn status_of<'a>(v: &'a Value, path: &str) -> &'a str {
        v["tests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["path"] == path)
            .unwrap_or_else(|| panic!("no test {path}"))["status"]
            .as_str()
            .unwrap()
    }

    #[test]
    fn statuses_follow_the_oracles() {
        let v = render(
            &[
                judged("clean", true, None, &[]),
                judged(
                    "crashing",
                    false,
                    None,
                    &[
                        ("crash", "illegal operation in f"),
                        ("leak", "leak: vfio/0 still exists"),
                    ],
                ),
                judged(
                    "blind",
                    false,
                    None,
                    &[("trace_lost", "FSM trace incomplete")],
                ),
                judged(
                    "known",
                    true,
                    Some("FSM: impossible_state on 0.0.0000 at 1.0"),
                    &[("fsm_violation", "FSM: impossible_state on 0.0.0000 at 1.0")],
                ),
            ],
            &sub(),
        );
        assert_eq!(status_of(&v, "ccwrig.clean"), "PASS");
        assert_eq!(status_of(&v, "ccwrig.clean.crash"), "PASS");
        assert_eq!(status_of(&v, "ccwrig.crashing"), "FAIL");
        assert_eq!(status_of(&v, "ccwrig.crashing.crash"), "FAIL");
        assert_eq!(status_of(&v, "ccwrig.crashing.steps"), "PASS");
        assert_eq!(status_of(&v, "ccwrig.blind"), "ERROR");
        assert_eq!(status_of(&v, "ccwrig.blind.fsm"), "ERROR");
        assert_eq!(status_of(&v, "ccwrig.known"), "FAIL");
        // 4 scenarios x (1 + 7 oracles); one checkout and one build for one kernel.
        assert_eq!(v["tests"].as_array().unwrap().len(), 32);
        assert_eq!(v["checkouts"].as_array().unwrap().len(), 1);
        assert_eq!(v["builds"].as_array().unwrap().len(), 1);
        assert_eq!(v["tests"][0]["path"], "ccwrig.clean");
        assert_eq!(v["tests"][1]["path"], "ccwrig.clean.crash");
        let known = v["incidents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["test_id"] == "ccwrig_ci:r1.ccwrig.known.fsm")
            .unwrap();
        assert_eq!(known["misc"]["known_finding"], true);
        assert_eq!(v["checkouts"][0]["patchset_hash"], kernel().patchset_hash);
    }

    #[test]
    fn findings_of_one_bug_are_one_issue_with_an_incident_per_test() {
        let v = render(
            &[
                judged(
                    "a",
                    false,
                    None,
                    &[
                        ("crash", "illegal operation in f"),
                        ("crash", "illegal operation in f"),
                    ],
                ),
                judged(
                    "b",
                    false,
                    None,
                    &[("leak", "leak: 0.0.0000 available_instances 1 -> 0")],
                ),
                judged(
                    "c",
                    false,
                    None,
                    &[
                        ("crash", "illegal operation in f"),
                        ("leak", "leak: 0.0.0001 available_instances 2 -> 1"),
                    ],
                ),
            ],
            &sub(),
        );
        assert_eq!(v["issues"].as_array().unwrap().len(), 2, "{v:#}");
        assert_eq!(v["incidents"].as_array().unwrap().len(), 4, "{v:#}");
        // The same bug has the same issue id in another submission.
        let again = render(
            &[judged(
                "x",
                false,
                None,
                &[("crash", "illegal operation in f")],
            )],
            &Submission {
                origin: "ccwrig_ci".into(),
                run_id: "r2".into(),
            },
        );
        assert!(v["issues"]
            .as_array()
            .unwrap()
            .contains(&again["issues"][0]));
    }

    #[test]
    fn unbuilt_kernels_and_harness_errors() {
        let mut no_kernel = judged("nk", false, None, &[]);
        no_kernel.kernel = None;
        no_kernel.ending = Ending::NotRun {
            error: "kernel build failed: make bzImage".into(),
            build_failed: true,
        };
        let mut boot = judged("boot", false, None, &[]);
        boot.ending = Ending::HarnessError {
            error: "boot failed: agent never connected".into(),
        };
        let v = render(&[no_kernel, boot], &sub());
        assert_eq!(status_of(&v, "ccwrig.nk"), "MISS");
        assert_eq!(status_of(&v, "ccwrig.boot"), "ERROR");
        let unbuilt = v["builds"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["id"] == "ccwrig_ci:r1.unbuilt")
            .unwrap();
        assert_eq!(unbuilt["status"], "FAIL");
        assert_eq!(v["tests"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn origins_paths_and_excerpts_fit_the_schema_patterns() {
        assert!(check_origin("ccwrig_ci2").is_ok());
        for bad in ["", "CCWRIG", "my-ci", "a:b"] {
            assert!(check_origin(bad).is_err(), "{bad}");
        }
        assert_eq!(path_part("unplug.replug fd"), "unplug_replug_fd");
        let long = "é".repeat(10_000);
        let cut = text(&long, EXCERPT_MAX);
        assert!(cut.len() <= EXCERPT_MAX && cut.chars().all(|c| c == 'é'));
        assert_eq!(text("a\0b", 10), "ab");
    }
}
