//! The CI formats checked by tools we did not write: the KTAP output parsed by the kernel's own
//! `tools/testing/kunit/kunit.py parse` from the pinned source, and the KCIDB output validated
//! by KernelCI's `kcidb-io` (the published v5.3 schema with its format checks).
//!
//! Both fail, naming the fix, when their tool is missing: `ci/install-deps.sh` installs the
//! kernel source package and creates the kcidb-io virtualenv.
//!
//! The inputs: two recorded real runs (the seed sequence on 6.12.117 with the planted NOT_OPER
//! bug: a crash, a hang, an FSM final-state miss and leaks; and basic_lifecycle passing on the
//! clean kernel), and outcomes that reach every other branch (known finding, lost trace,
//! harness error, a kernel build that failed).

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ccwrig::report::kcidb::{self, Submission};
use ccwrig::report::ktap;
use ccwrig::report::outcome::{Ending, FindingFacts, ScenarioOutcome};

/// Where ci/install-deps.sh creates the kcidb-io virtualenv (`KCIDB_VENV` there).
const KCIDB_PYTHON: &str = "/usr/local/share/ccwrig/kcidb-venv/bin/python3";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn recorded() -> ScenarioOutcome {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/symbolize/6.12-seed-notoper-open-run");
    ScenarioOutcome::from_run_dir(&dir, &repo()).expect("recorded run directory")
}

fn recorded_clean() -> ScenarioOutcome {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ci/6.12-basic-lifecycle-run");
    ScenarioOutcome::from_run_dir(&dir, &repo()).expect("recorded run directory")
}

fn judged(
    name: &str,
    passed: bool,
    known: Option<&str>,
    f: &[(&str, &str, &str)],
) -> ScenarioOutcome {
    let mut o = recorded();
    o.name = name.into();
    o.file = Some(format!("scenarios/{name}.toml"));
    o.run_dir = Some(format!("runs/20261202-100000-run/{name}"));
    o.started = Some("2026-12-02T10:00:00Z".into());
    o.ending = Ending::Judged {
        passed,
        known_finding: known.map(str::to_string),
        findings: f
            .iter()
            .map(|(k, t, d)| FindingFacts::new(k, t, d))
            .collect(),
        seed: 42,
        boot_to_ready_ms: 2300,
    };
    o
}

/// Every branch of both formats, plus the real run.
fn outcomes() -> Vec<ScenarioOutcome> {
    let mut boot = judged("boot_fails", false, None, &[]);
    boot.ending = Ending::HarnessError {
        error: "boot failed: the agent did not connect within 120 s\nlast console line: (none)"
            .into(),
    };
    let mut unbuilt = judged("kernel_fails", false, None, &[]);
    unbuilt.kernel = None;
    unbuilt.ending = Ending::NotRun {
        error: "kernel build failed: compile failed (exit status: 2)".into(),
        build_failed: true,
    };
    vec![
        recorded(),
        recorded_clean(),
        judged("clean", true, None, &[]),
        judged(
            "reset_racing_io",
            true,
            Some("FSM: impossible_state on 0.0.0000 at 21.101"),
            &[
                ("fsm_violation", "FSM: impossible_state on 0.0.0000 at 21.101", "IDLE --IO_REQ--> ?"),
                ("step", "reset by a (line 9): EINVAL not in [ok]", "  12 ms a reset -> EINVAL"),
            ],
        ),
        judged(
            "lost_trace",
            false,
            None,
            &[("trace_lost", "FSM trace incomplete: the ring buffer dropped events", "170 lost")],
        ),
        judged(
            "console_noise",
            false,
            None,
            // kunit.py stops reading at these phrases; the serialiser must defuse them.
            &[("hang", "rescan by a still blocked at the end of the run", "[ 9.1] reboot: System halted\nList of all partitions:\nKernel panic - not syncing: VFS: x")],
        ),
        boot,
        unbuilt,
    ]
}

/// The pinned source, found (and extracted on first use) the way kernel builds find it.
fn kunit_py() -> PathBuf {
    let src = ccwrig::kernel::pinned_source(None).unwrap_or_else(|e| {
        panic!(
            "the pinned kernel source is needed for tools/testing/kunit/kunit.py: {e}\n\
             (ci/install-deps.sh installs it)"
        )
    });
    let k = src.join("tools/testing/kunit/kunit.py");
    assert!(
        k.is_file(),
        "{} is missing from the pinned source",
        k.display()
    );
    k
}

struct Parsed {
    status: i32,
    stdout: String,
    json: serde_json::Value,
}

fn kunit_parse(text: &str) -> Parsed {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("results.ktap");
    let json = dir.path().join("results.json");
    std::fs::write(&input, text).unwrap();
    let out = Command::new("python3")
        .arg(kunit_py())
        .arg("parse")
        .arg(format!("--json={}", json.display()))
        .arg(&input)
        .output()
        .expect("python3 runs kunit.py");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let json = std::fs::read_to_string(&json).unwrap_or_else(|e| {
        panic!(
            "kunit.py wrote no JSON ({e}):\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    Parsed {
        status: out.status.code().unwrap_or(-1),
        stdout,
        json: serde_json::from_str(&json).unwrap(),
    }
}

/// `name -> status` of kunit.py's JSON: groups (scenarios with subtests) as `name/case`.
fn statuses(j: &serde_json::Value) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for c in j["test_cases"].as_array().unwrap() {
        m.insert(
            c["name"].as_str().unwrap().to_string(),
            c["status"].as_str().unwrap().to_string(),
        );
    }
    for g in j["sub_groups"].as_array().unwrap() {
        let g_name = g["name"].as_str().unwrap();
        for c in g["test_cases"].as_array().unwrap() {
            m.insert(
                format!("{g_name}/{}", c["name"].as_str().unwrap()),
                c["status"].as_str().unwrap().to_string(),
            );
        }
    }
    m
}

#[test]
fn kunit_py_parses_our_ktap_as_we_meant_it() {
    let outcomes = outcomes();
    let text = ktap::render(&outcomes);
    let p = kunit_parse(&text);
    // Structural problems (wrong numbering, missing plan or result lines) are "[ERROR]" lines.
    assert!(
        !p.stdout.contains("[ERROR]"),
        "kunit.py reported errors:\n{}\n{text}",
        p.stdout
    );
    assert_eq!(
        p.status, 1,
        "there are failures, so kunit.py must fail:\n{}",
        p.stdout
    );
    let s = statuses(&p.json);
    let want: &[(&str, &str)] = &[
        // The real run: crash, hang, FSM final state and leaks failed; the rest passed.
        ("unplug_request_reset/crash", "FAIL"),
        ("unplug_request_reset/steps", "PASS"),
        ("unplug_request_reset/hang", "FAIL"),
        ("unplug_request_reset/guest_alive", "PASS"),
        ("unplug_request_reset/fsm", "FAIL"),
        ("unplug_request_reset/dmesg", "PASS"),
        ("unplug_request_reset/leaks", "FAIL"),
        ("basic_lifecycle/crash", "PASS"),
        ("basic_lifecycle/fsm", "PASS"),
        ("basic_lifecycle/leaks", "PASS"),
        ("clean/crash", "PASS"),
        ("clean/leaks", "PASS"),
        // XFAIL is "ok": the known bug does not fail the suite.
        ("reset_racing_io/fsm", "PASS"),
        ("reset_racing_io/steps", "PASS"),
        ("lost_trace/fsm", "FAIL"),
        ("console_noise/hang", "FAIL"),
        // Every scenario after the noisy one was still read.
        ("boot_fails", "FAIL"),
        ("kernel_fails", "FAIL"),
    ];
    for (name, status) in want {
        assert_eq!(
            s.get(*name).map(String::as_str),
            Some(*status),
            "{name} in {s:#?}"
        );
    }
    assert_eq!(s.len(), 6 * 7 + 2, "{s:#?}");
    // 44 leaf tests: 4 real-run oracles + 1 lost trace + 1 noisy hang + 2 errors fail.
    assert!(
        p.stdout.contains("Ran 44 tests: passed: 36, failed: 8"),
        "{}",
        p.stdout
    );
}

#[test]
fn kunit_py_stops_at_a_raw_console_phrase_which_is_why_we_defuse_it() {
    // The control for the noisy scenario above: undo the defusing and kunit.py loses every
    // test after it.
    let text = ktap::render(&outcomes()).replace("reboot - System halted", "reboot: System halted");
    let p = kunit_parse(&text);
    assert!(
        p.stdout
            .contains("[ERROR] Test: console_noise: missing expected subtest!")
            && !p.stdout.contains("Ran 44 tests: passed: 36, failed: 8"),
        "{}",
        p.stdout
    );
}

#[test]
fn kunit_py_passes_an_all_clean_run() {
    let text = ktap::render(&[judged("a", true, None, &[]), judged("b", true, None, &[])]);
    let p = kunit_parse(&text);
    assert_eq!(p.status, 0, "{}", p.stdout);
    assert!(
        p.stdout.contains("Ran 14 tests: passed: 14"),
        "{}",
        p.stdout
    );
}

fn kcidb_python() -> String {
    let py = std::env::var("CCWRIG_KCIDB_PYTHON").unwrap_or_else(|_| KCIDB_PYTHON.into());
    assert!(
        Path::new(&py).is_file(),
        "{py} is missing: ci/install-deps.sh creates the kcidb-io virtualenv \
         (or point CCWRIG_KCIDB_PYTHON at a python3 that can import kcidb_io)"
    );
    py
}

/// kcidb-io's validation of `data` against exactly v5.3: Ok, or the validator's message.
fn kcidb_validate(data: &serde_json::Value) -> Result<(), String> {
    let mut child = Command::new(kcidb_python())
        .args([
            "-c",
            "import json, sys, kcidb_io\n\
             data = json.load(sys.stdin)\n\
             try:\n    kcidb_io.schema.V5_3.validate_exactly(data)\n\
             except Exception as e:\n    print(e); sys.exit(1)\n\
             print('valid', kcidb_io.schema.V5_3)\n",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the kcidb-io python runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(data.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("ModuleNotFoundError"), "{text}");
    if out.status.success() && text.contains("valid v5.3") {
        Ok(())
    } else {
        Err(text)
    }
}

fn ids(v: &serde_json::Value, list: &str) -> HashSet<String> {
    v[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn kcidb_io_validates_our_report_and_rejects_a_broken_one() {
    let sub = Submission {
        origin: "ccwrig_test".into(),
        run_id: "3f2c1a9e-0000-4000-8000-000000000001".into(),
    };
    let v = kcidb::render(&outcomes(), &sub);
    if let Err(e) = kcidb_validate(&v) {
        panic!("kcidb-io rejected the report: {e}\n{v:#}");
    }

    // The schema does not check references; every id we point at must exist, once.
    for list in ["checkouts", "builds", "tests", "issues", "incidents"] {
        assert_eq!(
            ids(&v, list).len(),
            v[list].as_array().unwrap().len(),
            "{list} ids unique"
        );
    }
    let (checkouts, builds, tests, issues) = (
        ids(&v, "checkouts"),
        ids(&v, "builds"),
        ids(&v, "tests"),
        ids(&v, "issues"),
    );
    for b in v["builds"].as_array().unwrap() {
        assert!(checkouts.contains(b["checkout_id"].as_str().unwrap()));
    }
    for t in v["tests"].as_array().unwrap() {
        assert!(builds.contains(t["build_id"].as_str().unwrap()));
    }
    for i in v["incidents"].as_array().unwrap() {
        assert!(issues.contains(i["issue_id"].as_str().unwrap()));
        assert!(tests.contains(i["test_id"].as_str().unwrap()));
        assert!(builds.contains(i["build_id"].as_str().unwrap()));
    }

    // The real run: its kernel is a build with the patch series' hash on its checkout, and
    // its two oopses of one bug are one issue.
    let real = v["tests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["path"] == "ccwrig.unplug_request_reset")
        .unwrap();
    assert_eq!(real["status"], "FAIL");
    assert_eq!(real["misc"]["seed"], 1692444545977850787u64);
    assert!(v["checkouts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["patchset_hash"]
            == "181bfcd39665d465e04b91d20c2eb2567bee0f4369e9f5a7d66e7286e6ee9674"));
    let crash_issues: Vec<_> = v["issues"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["report_subject"] == "illegal operation in vfio_ccw_mdev_ioctl")
        .collect();
    assert_eq!(crash_issues.len(), 1);
    for (path, status) in [
        ("ccwrig.basic_lifecycle", "PASS"),
        ("ccwrig.clean", "PASS"),
        ("ccwrig.reset_racing_io", "FAIL"),
        ("ccwrig.lost_trace", "ERROR"),
        ("ccwrig.boot_fails", "ERROR"),
        ("ccwrig.kernel_fails", "MISS"),
    ] {
        let t = v["tests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["path"] == path)
            .unwrap();
        assert_eq!(t["status"], status, "{path}");
    }

    // A control: the validator is not a rubber stamp.
    for (what, broken) in [
        ("status outside the enum", {
            let mut b = v.clone();
            b["tests"][0]["status"] = "BROKEN".into();
            b
        }),
        ("an id without its origin prefix", {
            let mut b = v.clone();
            b["builds"][0]["id"] = "no-origin".into();
            b
        }),
        ("a null property", {
            let mut b = v.clone();
            b["checkouts"][0]["comment"] = serde_json::Value::Null;
            b
        }),
    ] {
        assert!(kcidb_validate(&broken).is_err(), "kcidb-io accepted {what}");
    }
}
