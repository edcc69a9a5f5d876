//! The scenario library parses, survives a write/read round trip, and every kind of mistake in
//! `tests/data/bad-scenarios/` is reported where it is. Each bad file says on its first line
//! what the error must be: `# error: <line>:<col>: <message substring>`.

use std::path::{Path, PathBuf};

use ccwrig::scenario::{self, Scenario};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn library() -> Vec<Scenario> {
    match scenario::load_dir(&repo().join("scenarios")) {
        Ok(s) => s,
        Err(errs) => panic!(
            "scenario library has errors:\n{}",
            errs.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

#[test]
fn every_library_scenario_parses() {
    let all = library();
    assert!(
        all.len() >= 15,
        "expected at least 15 scenarios, found {}",
        all.len()
    );
    for s in &all {
        assert!(
            !s.description.trim().is_empty(),
            "{}: empty description",
            s.name
        );
        let snake = s
            .name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        assert!(
            snake,
            "{}: scenario names are snake_case test names",
            s.name
        );
    }
}

#[test]
fn to_toml_round_trips() {
    for s in library() {
        let text = s.to_toml();
        let back = scenario::parse_str(&text, &s.name, s.path.as_deref())
            .unwrap_or_else(|e| panic!("{}: written form does not parse: {e}\n{text}", s.name));
        assert_eq!(
            back, s,
            "{}: round trip changed the scenario\n{text}",
            s.name
        );
        // Writing is deterministic: the fuzzer's corpus should not churn.
        assert_eq!(back.to_toml(), text, "{}", s.name);
    }
}

#[test]
fn generated_scenarios_validate_without_positions() {
    let mut s = library().into_iter().next().expect("a scenario");
    s.race.repeat = 0;
    let e = s.validate().expect_err("repeat = 0 is invalid");
    assert_eq!(e.pos, None);
    assert_eq!(e.path, "race.repeat");
}

struct BadCase {
    file: PathBuf,
    line: usize,
    col: usize,
    message: String,
}

/// `# error: 7:1: unknown field "handel"`
fn bad_case(file: &Path) -> BadCase {
    let text = std::fs::read_to_string(file).expect("readable");
    let first = text.lines().next().unwrap_or_default();
    let spec = first.strip_prefix("# error: ").unwrap_or_else(|| {
        panic!(
            "{}: first line must be `# error: L:C: message`",
            file.display()
        )
    });
    let mut parts = spec.splitn(3, ':');
    let num = |p: Option<&str>| -> usize {
        p.and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| panic!("{}: bad `# error:` line", file.display()))
    };
    let line = num(parts.next());
    let col = num(parts.next());
    let message = parts.next().unwrap_or_default().trim().to_string();
    BadCase {
        file: file.to_path_buf(),
        line,
        col,
        message,
    }
}

#[test]
fn bad_scenarios_fail_where_they_say() {
    let dir = repo().join("harness/tests/data/bad-scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("bad-scenarios dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 10,
        "expected at least 10 kinds of mistakes, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    for f in &files {
        let case = bad_case(f);
        match scenario::parse_file(&case.file) {
            Ok(_) => failures.push(format!(
                "{}: parsed, but should fail with {:?}",
                f.display(),
                case.message
            )),
            Err(e) => {
                let shown = e.to_string();
                if e.pos != Some((case.line, case.col)) || !shown.contains(&case.message) {
                    failures.push(format!(
                        "{}:\n  want {}:{}: ...{}...\n  got  {shown}",
                        f.display(),
                        case.line,
                        case.col,
                        case.message
                    ));
                }
                assert!(
                    shown.starts_with(&f.display().to_string()),
                    "errors name the file: {shown}"
                );
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Fields the library does not use still survive the round trip (the fuzzer and shrinker set
/// them all).
#[test]
fn every_optional_field_round_trips() {
    let text = r#"
description = "all optional fields, with \"quotes\" and\na newline"
known_finding = { title = "illegal operation in vfio_ccw_mdev_ioctl", note = "5.15-rc1", evidence = "fixtures/seed.log" }

[machine]
profile = "debug"
devices = [ { id = "rng0", devno = "fe.0.0002" }, { id = "net 0", devno = "fe.0.0003" } ]
append = "slub_debug=P panic_on_warn=1"

[[setup]]
op = "mdev_create"
parent = "0.0.0001"
mdev = "m1"
uuid = "8c4b1e9a-0000-4000-8000-000000000001"

[actors.user]
steps = [
  { op = "open", mdev = "m1", handle = "d", via = "iommufd", fail_nth = 3, expect = "any" },
  { barrier = "b" },
  { op = "close", handle = "d", order = ["container", "device"], expect = ["ok", "EBUSY"], deadline_ms = 7, jitter_ms = [1, 2], label = "a \"label\"" },
  { op = "sysrq", key = "w", expect = "any" },
]

[actors.host]
steps = [ { barrier = "b" }, { op = "device_del", device = "net 0" }, { op = "sleep", ms = 5 } ]

[race]
repeat = 3
jitter_ms = [0, 9]
seed = 18446744073709551615

[expect]
crash = "^illegal operation"
dmesg_contains = ["a"]
dmesg_not_contains = ["b", "c"]
fsm_violations = ["close_in_standby"]
fsm_final = { "0.0.0001" = "IDLE" }
leaks = "ignore"
"#;
    // "net 0" is not a valid device id: check that first, then use a good one.
    let e = scenario::parse_str(text, "all", None).expect_err("device id with a space");
    assert!(e.to_string().contains("bad device name"), "{e}");
    let text = text.replace("net 0", "net0");
    let s = scenario::parse_str(&text, "all", None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.race.seed, Some(u64::MAX));
    let back = scenario::parse_str(&s.to_toml(), "all", None)
        .unwrap_or_else(|e| panic!("{e}\n{}", s.to_toml()));
    assert_eq!(back, s, "{}", s.to_toml());
}

/// A phased file: its `[[phase]]` tables become the last program (with the file's name,
/// description and known finding) and its history, in file order, each phase keeping its own
/// steps and seed; it writes back to the same text.
#[test]
fn a_phased_file_is_programs_in_order() {
    let text = r#"
description = "Bind, use and unbind a subchannel, then use it again in the same VM."
known_finding = { title = "corrupted list in kobj_kset_leave", note = "needs the first phase" }

[[phase]]
description = "First program."

[phase.machine]
devices = [ { id = "rng0", devno = "fe.0.0002" } ]

[[phase.setup]]
op = "bind"
schid = "0.0.0000"
driver = "vfio_ccw"

[phase.actors.user]
steps = [
  { op = "mdev_create", parent = "0.0.0000", mdev = "m1" },
  { op = "mdev_remove", mdev = "m1" },
]

[phase.race]
seed = 7

[[phase]]
description = "Second program."

[phase.machine]
devices = [ { id = "rng0", devno = "fe.0.0002" } ]

[phase.actors.host]
steps = [ { op = "device_del", device = "rng0" } ]

[[phase]]
description = "Third program."

[phase.machine]
devices = [ { id = "rng0", devno = "fe.0.0002" } ]

[phase.actors.user]
steps = [ { op = "unbind", schid = "0.0.0000", expect = "any" } ]

[phase.race]
seed = 9
"#;
    let s = scenario::parse_str(text, "seq", None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.name, "seq");
    assert!(s.description.starts_with("Bind, use and unbind"));
    assert_eq!(
        s.known_finding.as_ref().map(|k| k.title.as_str()),
        Some("corrupted list in kobj_kset_leave")
    );
    let phases: Vec<&Scenario> = s.phases().collect();
    assert_eq!(phases.len(), 3);
    let names: Vec<&str> = phases.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["seq.phase1", "seq.phase2", "seq"]);
    assert_eq!(s.history[0].description, "First program.");
    assert_eq!(s.history[0].setup.len(), 1);
    assert_eq!(s.history[1].actors[0].name, "host");
    assert!(s.history[1].unplugs() && !s.unplugs());
    let seeds: Vec<Option<u64>> = phases.iter().map(|p| p.race.seed).collect();
    assert_eq!(seeds, [Some(7), None, Some(9)]);
    assert!(s
        .history
        .iter()
        .all(|p| p.history.is_empty() && p.known_finding.is_none()));
    // Steps keep the lines they were written on (the runner's records point at them).
    assert_eq!(s.actors[0].steps[0].line(), 41);

    let written = s.to_toml();
    let back =
        scenario::parse_str(&written, "seq", None).unwrap_or_else(|e| panic!("{e}\n{written}"));
    assert_eq!(back, s, "{written}");
    assert_eq!(back.to_toml(), written);
    assert_eq!(written.matches("[[phase]]").count(), 3, "{written}");

    // Built in code from programs, the same sequence validates and writes the same text.
    let built = Scenario::from_phases(s.clone().into_phases(), "seq", &s.description)
        .map(|mut b| {
            b.known_finding = s.known_finding.clone();
            b
        })
        .expect("three phases");
    assert_eq!(built, s);
    built.validate().expect("valid");
    let mut bad = built.clone();
    bad.history[1].machine.devices[0].devno = "fe.0.0009".into();
    let e = bad.validate().expect_err("a phase on another machine");
    assert_eq!(e.path, "phase[1].machine");
}

/// Every scenario of the library is a single program: phased files are reproducers.
#[test]
fn library_scenarios_have_no_phases() {
    for s in library() {
        assert!(s.history.is_empty(), "{}", s.name);
    }
}
