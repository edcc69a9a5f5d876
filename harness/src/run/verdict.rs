//! A run's verdict, computed only from the oracles and the step records — never from ad-hoc
//! greps inside scenarios.

use std::path::PathBuf;

use ccwrig_proto::Outcome;
use serde::Serialize;

use super::record::StepRecord;
use crate::oracle;
use crate::scenario::{CrashExpect, FsmViolationsExpect, LeaksExpect, Scenario};
use crate::vm::QmpEvent;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// A kernel crash report (oops, WARN, KASAN, ...) or a guest panic.
    Crash,
    /// A step's outcome was not one the scenario allowed.
    Step,
    /// An operation still blocked when the run ended.
    Hang,
    /// The guest stopped answering the agent protocol.
    GuestDead,
    FsmViolation,
    FsmFinal,
    /// The trace ring buffer overran: the FSM replay misses events (its violations may be
    /// artefacts, real ones may be missed). Not a kernel finding; the run cannot be judged.
    TraceLost,
    Dmesg,
    Leak,
    /// The scenario expected a crash that did not happen.
    MissingCrash,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub kind: FindingKind,
    pub title: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub passed: bool,
    pub findings: Vec<Finding>,
    /// Crash reports the oracle found (also those a scenario expected).
    pub crashes: Vec<oracle::crash::CrashReport>,
    /// Set when a finding matched the scenario's `known_finding`: the run reproduced that
    /// known bug (its other findings are its consequences).
    pub known_finding: Option<String>,
    pub guest_alive: bool,
    pub steps: usize,
    pub fsm_violations: usize,
}

impl Verdict {
    /// Whether the guest is beyond a clean poweroff.
    pub fn guest_dead(&self) -> bool {
        !self.guest_alive
    }

    /// One line: `PASS`, `FAIL: <first finding>`, or `KNOWN: <title>`.
    pub fn line(&self) -> String {
        match (self.passed, &self.known_finding, self.findings.first()) {
            (true, Some(k), _) if self.findings.len() > 1 => {
                format!(
                    "KNOWN FINDING: {k} (+{} consequences)",
                    self.findings.len() - 1
                )
            }
            (true, Some(k), _) => format!("KNOWN FINDING: {k}"),
            (true, None, _) => "PASS".into(),
            (false, _, Some(f)) if self.findings.len() > 1 => {
                format!("FAIL: {} (+{} more)", f.title, self.findings.len() - 1)
            }
            (false, _, Some(f)) => format!("FAIL: {}", f.title),
            (false, _, None) => "FAIL".into(),
        }
    }
}

/// What the guest said during one program: the slices of the VM's streams since the program
/// started (a long-lived fuzzing VM runs many programs).
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    pub console: String,
    pub kmsg: Vec<String>,
    pub trace: Vec<String>,
    pub qmp_events: Vec<QmpEvent>,
    pub baseline: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub alive: bool,
    /// Where `fsm.txt` goes.
    pub dir: PathBuf,
    /// The kernel's blocked-task dump, taken when a step hung or the guest stopped answering.
    pub blocked_dump: Option<String>,
    /// Threads in D state at both end-of-run checks (oracle::stuck).
    pub stuck: Vec<oracle::stuck::StuckTask>,
}

fn finding(kind: FindingKind, title: impl Into<String>, detail: impl Into<String>) -> Finding {
    Finding {
        kind,
        title: title.into(),
        detail: detail.into(),
    }
}

/// The kernel version from the agent's `uname -r`, to pick the FSM map.
fn version_of(release: &str) -> (u32, u32) {
    let mut it = release
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty());
    let major = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let minor = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    (major, minor)
}

pub fn judge(sc: &Scenario, records: &[StepRecord], ev: &Evidence, release: &str) -> Verdict {
    judge_with_map(sc, records, ev, release, None)
}

/// [`judge`] with the FSM map of the kernel's own sources, which wins over the built-in map
/// of its version.
pub fn judge_with_map(
    sc: &Scenario,
    records: &[StepRecord],
    ev: &Evidence,
    release: &str,
    own_map: Option<&oracle::fsm::FsmMap>,
) -> Verdict {
    let mut findings = Vec::new();

    // Crashes: the console is the evidence that survives a dead agent; kmsg adds what the
    // console dropped. A report seen in both counts once.
    let console = &ev.console;
    let kmsg: String = ev.kmsg.join("\n");
    let mut crashes = oracle::crash::detect(console);
    for c in oracle::crash::detect(&kmsg) {
        if !crashes.iter().any(|k| k.title == c.title) {
            crashes.push(c);
        }
    }
    for e in ev.qmp_events.iter().filter(|e| e.name == "GUEST_PANICKED") {
        let r = oracle::crash::guest_panicked_report(&e.data.to_string());
        if !crashes.iter().any(|k| !k.alive) {
            crashes.push(r);
        }
    }
    let known_re = sc
        .known_finding
        .as_ref()
        .and_then(|k| regex::Regex::new(&k.title).ok());
    let expected_re = match &sc.expect.crash {
        CrashExpect::None => None,
        CrashExpect::TitleRegex(r) => regex::Regex::new(r).ok(),
    };
    let mut expected_seen = false;
    for c in &crashes {
        if expected_re.as_ref().is_some_and(|re| re.is_match(&c.title)) {
            expected_seen = true;
        } else {
            findings.push(finding(
                FindingKind::Crash,
                c.title.clone(),
                c.text.lines().take(40).collect::<Vec<_>>().join("\n"),
            ));
        }
    }
    if let CrashExpect::TitleRegex(r) = &sc.expect.crash {
        if !expected_seen {
            findings.push(finding(
                FindingKind::MissingCrash,
                format!("expected a crash matching /{r}/"),
                "no such crash report",
            ));
        }
    }

    // A kernel thread left waiting: the hang no step shows.
    for t in &ev.stuck {
        findings.push(finding(
            FindingKind::Hang,
            t.title(),
            format!(
                "{} (tid {}) in D state in {} at both end-of-run checks\n{}",
                t.comm,
                t.tid,
                t.wchan,
                ev.blocked_dump.as_deref().unwrap_or("")
            ),
        ));
    }

    // Steps.
    for r in records {
        if matches!(r.outcome, Outcome::Blocked { .. }) && r.late.is_none() {
            findings.push(finding(
                FindingKind::Hang,
                format!(
                    "{} by {} still blocked at the end of the run",
                    r.op.name(),
                    r.actor
                ),
                format!(
                    "{}\n{}",
                    r.summary(),
                    ev.blocked_dump.as_deref().unwrap_or("")
                ),
            ));
        } else if !r.matched {
            findings.push(finding(
                FindingKind::Step,
                format!(
                    "{} by {} (line {}): {} not in [{}]",
                    r.op.name(),
                    r.actor,
                    r.line,
                    r.late.as_ref().unwrap_or(&r.outcome).short(),
                    r.expected.join(", ")
                ),
                r.summary(),
            ));
        }
    }
    if !ev.alive && crashes.is_empty() {
        findings.push(finding(
            FindingKind::GuestDead,
            "guest stopped answering",
            format!(
                "no answer to a liveness request or no recent heartbeat\n{}",
                ev.blocked_dump.as_deref().unwrap_or("")
            ),
        ));
    }

    // FSM.
    let trace = &ev.trace;
    let (major, minor) = version_of(release);
    let mut fsm_violations = 0;
    if let Some(map) = own_map.or_else(|| oracle::fsm::map_for_version(major, minor)) {
        let report = oracle::fsm::check(trace.iter().map(String::as_str), map);
        let _ = std::fs::write(ev.dir.join("fsm.txt"), oracle::fsm::render(&report));
        fsm_violations = report.violations.len();
        if !report.lost.is_empty() {
            let count = report
                .lost_total()
                .map_or_else(|| "an uncounted number of".to_string(), |n| n.to_string());
            findings.push(finding(
                FindingKind::TraceLost,
                "FSM trace incomplete: the ring buffer dropped events".to_string(),
                format!(
                    "trace_pipe reported {count} lost events ({:?}); the agent's reader fell \
                     behind. fsm.txt replays what arrived. A larger buffer on the command line \
                     (trace_buf_size=) or fewer traced events make the run judgeable.",
                    report.lost
                ),
            ));
        }
        let allowed: &[String] = match &sc.expect.fsm_violations {
            FsmViolationsExpect::None => &[],
            FsmViolationsExpect::Rules(r) => r,
        };
        for v in &report.violations {
            // Scenario files name rules as the oracle serialises them (`close_in_standby`).
            let rule = serde_json::to_value(v.rule)
                .ok()
                .and_then(|r| r.as_str().map(str::to_string))
                .unwrap_or_default();
            if !allowed.iter().any(|a| *a == rule) {
                findings.push(finding(
                    FindingKind::FsmViolation,
                    format!("FSM: {rule} on {} at {:.6}", v.schid, v.ts),
                    v.message.clone(),
                ));
            }
        }
        for (schid, want) in &sc.expect.fsm_final {
            let got = report
                .final_states
                .get(schid)
                .map(String::as_str)
                .unwrap_or("(no FSM events)");
            if got != want {
                findings.push(finding(
                    FindingKind::FsmFinal,
                    format!("FSM: {schid} ended in {got}, expected {want}"),
                    "",
                ));
            }
        }
    } else {
        let _ = std::fs::write(
            ev.dir.join("fsm.txt"),
            format!("no FSM map for kernel {release}\n"),
        );
        if !sc.expect.fsm_final.is_empty() {
            findings.push(finding(
                FindingKind::FsmFinal,
                format!("no FSM map for kernel {release}"),
                "",
            ));
        }
    }

    // dmesg expectations, over everything the kernel said.
    let all_log = format!("{console}\n{kmsg}");
    for s in &sc.expect.dmesg_contains {
        if !all_log.contains(s.as_str()) {
            findings.push(finding(
                FindingKind::Dmesg,
                format!("kernel log lacks {s:?}"),
                "",
            ));
        }
    }
    for s in &sc.expect.dmesg_not_contains {
        if all_log.contains(s.as_str()) {
            findings.push(finding(
                FindingKind::Dmesg,
                format!("kernel log contains {s:?}"),
                "",
            ));
        }
    }

    // Leaks: only meaningful when both snapshots exist, the guest is alive and did not crash
    // (after a crash the runner skips teardown and cleanup: what is left is the crash's).
    if sc.expect.leaks == LeaksExpect::None && ev.alive && crashes.is_empty() {
        if let (Some(b), Some(a)) = (&ev.baseline, &ev.after) {
            let (b, a) = (
                oracle::leaks::SysSnapshot::from_json(b),
                oracle::leaks::SysSnapshot::from_json(a),
            );
            let unplugs = scenario_unplugs(sc);
            for l in oracle::leaks::compare(&b, &a) {
                if let Some(t) = leak_title(&l, unplugs) {
                    findings.push(finding(FindingKind::Leak, t, format!("{l:?}")));
                }
            }
        }
    }

    // A scenario that exposes a known kernel bug stays in the suite: when the bug shows (its
    // title matches a crash or any other finding), the run is that known finding, with the
    // findings that followed from it kept in the report; when it does not show, the run must
    // be clean like any other.
    let known = known_re.and_then(|re| {
        findings
            .iter()
            .find(|f| re.is_match(&f.title))
            .map(|f| f.title.clone())
    });
    Verdict {
        passed: findings.is_empty() || known.is_some(),
        findings,
        crashes,
        known_finding: known,
        guest_alive: ev.alive,
        steps: records.len(),
        fsm_violations,
    }
}

/// Whether the scenario hot-unplugs a device (its subchannel is then meant to be gone).
fn scenario_unplugs(sc: &Scenario) -> bool {
    sc.setup
        .iter()
        .chain(sc.teardown.iter())
        .chain(sc.actors.iter().flat_map(|a| a.steps.iter()))
        .any(|s| matches!(s.op(), Some(ccwrig_proto::Op::DeviceDel { .. })))
}

/// The finding title for a leak, or None for a change the scenario caused on purpose.
fn leak_title(l: &oracle::leaks::Leak, unplugs: bool) -> Option<String> {
    use oracle::leaks::Leak;
    Some(match l {
        Leak::Slab {
            cache,
            before,
            after,
        } => format!("leak: {cache} slab grew {before} -> {after}"),
        Leak::Instances {
            schid,
            before,
            after,
        } => format!("leak: {schid} available_instances {before} -> {after}"),
        Leak::Mdev { uuid } => format!("leak: mdev {uuid} still exists"),
        Leak::DevNode { node } => format!("leak: {node} still exists"),
        Leak::AgentHandle { name } => format!("leak: agent still holds {name}"),
        Leak::SubchannelGone { .. } if unplugs => return None,
        Leak::SubchannelGone { schid } => format!("subchannel {schid} vanished"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{Expect, KnownFinding, OpStep};
    use ccwrig_proto::Op;

    // Real console logs and traces recorded from guest runs (see tests/data/*/README.md).
    const SEED_OOPS: &str =
        include_str!("../../tests/data/reports/seed-5.15-rc1-vfio-ccw-teardown-oops.log");
    const CLEAN_UNPLUG: &str = include_str!("../../tests/data/reports/6.12-unplug-while-open.log");
    const RESET_RACE_TRACE: &str =
        include_str!("../../tests/data/fsm/6.12-reset-racing-io-request.trace");
    const UNPLUG_TRACE: &str = include_str!("../../tests/data/fsm/6.12-unplug-while-open.trace");
    const LOST_TRACE: &str = include_str!("../../tests/data/fsm/6.12-lost-events.trace");

    fn scenario(extra: &str) -> Scenario {
        let text = format!(
            "description = \"t\"\n{extra}\n[machine]\ndevices = [{{ id = \"rng0\", devno = \"fe.0.0002\" }}]\n[actors.a]\nsteps = [{{ op = \"rescan\" }}]\n"
        );
        crate::scenario::parse_str(&text, "t", None).unwrap_or_else(|e| panic!("{e}"))
    }

    fn evidence(console: &str, trace: &str) -> Evidence {
        Evidence {
            console: console.into(),
            trace: trace.lines().map(str::to_string).collect(),
            alive: true,
            dir: std::env::temp_dir(),
            ..Default::default()
        }
    }

    fn record(outcome: Outcome, expect: &[&str], late: Option<Outcome>) -> StepRecord {
        let mut s = OpStep::new(Op::MdevRemove { mdev: "m".into() });
        s.expect = expect.iter().map(|e| Expect::parse(e).unwrap()).collect();
        StepRecord {
            phase: super::super::record::Phase::Race,
            actor: "a".into(),
            rep: 0,
            index: 0,
            line: 3,
            label: None,
            op: s.op.clone(),
            sent_ms: 0,
            answered_ms: 1,
            jitter_ms: 0,
            matched: s.accepts(&outcome),
            outcome,
            late,
            late_ms: None,
            guest_start_us: 0,
            guest_duration_us: 0,
            data: serde_json::Value::Null,
            expected: expect.iter().map(|e| e.to_string()).collect(),
            request_id: None,
        }
    }

    fn kinds(v: &Verdict) -> Vec<FindingKind> {
        v.findings.iter().map(|f| f.kind).collect()
    }

    #[test]
    fn clean_unplug_log_passes_and_seed_oops_fails_with_its_title() {
        let dir = std::env::temp_dir().join(format!("ccwrig-verdict-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut ev = evidence(CLEAN_UNPLUG, UNPLUG_TRACE);
        ev.dir = dir.clone();
        let v = judge(&scenario(""), &[], &ev, "6.12.117");
        assert!(v.passed, "{:?}", v.findings);
        assert!(std::fs::read_to_string(dir.join("fsm.txt"))
            .unwrap()
            .contains("NOT_OPER"));

        let v = judge(&scenario(""), &[], &evidence(SEED_OOPS, ""), "5.15.0-rc1");
        assert!(!v.passed);
        assert_eq!(kinds(&v), vec![FindingKind::Crash]);
        assert_eq!(
            v.findings[0].title,
            "illegal operation in vfio_ccw_mdev_ioctl"
        );
    }

    #[test]
    fn expected_crash_must_happen() {
        let sc = scenario("[expect]\ncrash = \"^illegal operation in vfio_ccw_mdev_ioctl$\"");
        assert!(judge(&sc, &[], &evidence(SEED_OOPS, ""), "5.15.0").passed);
        let v = judge(&sc, &[], &evidence(CLEAN_UNPLUG, ""), "6.12.117");
        assert_eq!(kinds(&v), vec![FindingKind::MissingCrash]);
    }

    #[test]
    fn known_finding_makes_the_run_that_bug_and_keeps_consequences() {
        let mut sc = scenario("");
        sc.known_finding = Some(KnownFinding {
            title: "^FSM: impossible_state on 0\\.0\\.0000".into(),
            note: String::new(),
            evidence: String::new(),
        });
        let consequence = record(
            Outcome::Errno {
                name: "EINVAL".into(),
                code: 22,
                call: "VFIO_DEVICE_RESET".into(),
            },
            &["ok"],
            None,
        );
        let v = judge(
            &sc,
            &[consequence.clone()],
            &evidence("", RESET_RACE_TRACE),
            "6.12.117",
        );
        assert!(v.passed);
        assert!(v
            .known_finding
            .as_deref()
            .is_some_and(|k| k.starts_with("FSM: impossible_state on 0.0.0000")));
        assert!(
            kinds(&v).contains(&FindingKind::Step)
                && kinds(&v).contains(&FindingKind::FsmViolation)
        );
        // Without the bug the same scenario must be clean: a step mismatch alone fails it.
        let v = judge(&sc, &[consequence], &evidence("", UNPLUG_TRACE), "6.12.117");
        assert!(!v.passed);
        assert_eq!(kinds(&v), vec![FindingKind::Step]);
    }

    #[test]
    fn fsm_violations_fail_unless_allowed() {
        let v = judge(
            &scenario(""),
            &[],
            &evidence("", RESET_RACE_TRACE),
            "6.12.117",
        );
        assert_eq!(kinds(&v), vec![FindingKind::FsmViolation]);
        let sc = scenario("[expect]\nfsm_violations = [\"impossible_state\"]");
        assert!(judge(&sc, &[], &evidence("", RESET_RACE_TRACE), "6.12.117").passed);
        let sc = scenario("[expect]\nfsm_final = { \"0.0.0000\" = \"STANDBY\" }");
        let v = judge(&sc, &[], &evidence("", UNPLUG_TRACE), "6.12.117");
        assert_eq!(kinds(&v), vec![FindingKind::FsmFinal]);
    }

    #[test]
    fn a_trace_with_lost_events_cannot_pass() {
        let v = judge(&scenario(""), &[], &evidence("", LOST_TRACE), "6.12.117");
        assert!(!v.passed);
        assert_eq!(kinds(&v), vec![FindingKind::TraceLost]);
        assert!(v.findings[0].detail.contains("170 lost events"));
        // The same events without the overrun lines: nothing to report.
        let whole: String = LOST_TRACE
            .lines()
            .filter(|l| !l.contains("LOST"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(judge(&scenario(""), &[], &evidence("", &whole), "6.12.117").passed);
    }

    #[test]
    fn steps_hangs_dmesg_and_dead_guests() {
        let table: Vec<(StepRecord, Vec<FindingKind>)> = vec![
            (record(Outcome::Ok, &["ok"], None), vec![]),
            (
                record(
                    Outcome::Blocked { after_ms: 5 },
                    &["blocked"],
                    Some(Outcome::Ok),
                ),
                vec![],
            ),
            (
                record(Outcome::Blocked { after_ms: 5 }, &["blocked"], None),
                vec![FindingKind::Hang],
            ),
            (
                record(
                    Outcome::Errno {
                        name: "EBUSY".into(),
                        code: 16,
                        call: "x".into(),
                    },
                    &["ok", "EINVAL"],
                    None,
                ),
                vec![FindingKind::Step],
            ),
        ];
        for (r, want) in table {
            let v = judge(
                &scenario(""),
                std::slice::from_ref(&r),
                &evidence(CLEAN_UNPLUG, ""),
                "6.12.117",
            );
            assert_eq!(kinds(&v), want, "{}", r.summary());
        }
        let sc = scenario("[expect]\ndmesg_contains = [\"MDEV: Unregistering\"]\ndmesg_not_contains = [\"Relaying device request\"]");
        assert!(judge(&sc, &[], &evidence(CLEAN_UNPLUG, ""), "6.12.117").passed);
        let v = judge(&sc, &[], &evidence("", ""), "6.12.117");
        assert_eq!(kinds(&v), vec![FindingKind::Dmesg]);
        let mut dead = evidence("", "");
        dead.alive = false;
        assert_eq!(
            kinds(&judge(&scenario(""), &[], &dead, "6.12.117")),
            vec![FindingKind::GuestDead]
        );
    }

    #[test]
    fn versions_from_releases() {
        assert_eq!(version_of("6.12.117"), (6, 12));
        assert_eq!(version_of("6.1.0-rc1+"), (6, 1));
        assert_eq!(version_of("5.15.0-rc1"), (5, 15));
        assert_eq!(version_of("garbage"), (0, 0));
    }
}
