//! The verdict on recorded console logs and traces, and on hand-made step records.
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
const UNMAP_LOCK_ORDER: &str =
    include_str!("../../tests/data/reports/6.12-debug-unmap-pinned-lock-order.log");

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
        ..Default::default()
    }
}

/// The verdict with the built-in FSM map of `release`, as the runner computes it.
fn judge(sc: &Scenario, records: &[StepRecord], ev: &Evidence, release: &str) -> Verdict {
    super::judge(sc, records, ev, &FsmReplay::new(&ev.trace, release, None))
}

fn record(outcome: Outcome, expect: &[&str], late: Option<Outcome>) -> StepRecord {
    let mut s = OpStep::new(Op::MdevRemove { mdev: "m".into() });
    s.expect = expect.iter().map(|e| Expect::parse(e).unwrap()).collect();
    StepRecord {
        line: 3,
        answered_ms: 1,
        matched: s.accepts(&outcome),
        late,
        expected: expect.iter().map(|e| e.to_string()).collect(),
        deadline_ms: 5000,
        ..StepRecord::for_test(s.op.clone(), outcome)
    }
}

fn kinds(v: &Verdict) -> Vec<FindingKind> {
    v.findings.iter().map(|f| f.kind).collect()
}

#[test]
fn clean_unplug_log_passes_and_seed_oops_fails_with_its_title() {
    let ev = evidence(CLEAN_UNPLUG, UNPLUG_TRACE);
    let fsm = FsmReplay::new(&ev.trace, "6.12.117", None);
    let v = super::judge(&scenario(""), &[], &ev, &fsm);
    assert!(v.passed, "{:?}", v.findings);
    assert!(fsm.text().contains("NOT_OPER"));

    let v = judge(&scenario(""), &[], &evidence(SEED_OOPS, ""), "5.15.0-rc1");
    assert!(!v.passed);
    assert_eq!(kinds(&v), vec![FindingKind::Crash]);
    assert_eq!(
        v.findings[0].title,
        "illegal operation in vfio_ccw_mdev_ioctl"
    );
    assert!(
        v.findings[0].key.starts_with("crash: "),
        "{}",
        v.findings[0].key
    );
}

/// A guided fuzz campaign's console had the whole oops while the agent's kmsg stream stopped
/// after its `Hardware name` line (both recorded 2026-12-03 in one VM, fast+cover 6.12.117):
/// one crash, titled by the whole report, whichever stream has it whole.
#[test]
fn a_report_cut_in_one_stream_is_the_same_crash_as_the_whole_one() {
    const CONSOLE: &str =
        include_str!("../../tests/data/reports/6.12-fuzz-cover-null-deref-cio-start-key.log");
    const KMSG_CUT: &str =
        include_str!("../../tests/data/reports/6.12-fuzz-cover-null-deref-cio-start-key.kmsg-cut");
    let whole = "BUG: unable to handle kernel NULL pointer dereference in cio_start_key";
    let cut: Vec<String> = KMSG_CUT.lines().map(str::to_string).collect();
    let with_kmsg = |console: &str, kmsg: Vec<String>| Evidence {
        kmsg,
        ..evidence(console, "")
    };
    for ev in [
        with_kmsg(CONSOLE, cut.clone()),
        // The other way round: the console cut, kmsg whole.
        with_kmsg(KMSG_CUT, CONSOLE.lines().map(str::to_string).collect()),
    ] {
        let v = judge(&scenario(""), &[], &ev, "6.12.117");
        assert_eq!(titles(&v), vec![whole], "{:?}", v.findings);
    }
    // Alone, the cut copy is still a crash (of the kind only).
    let v = judge(&scenario(""), &[], &with_kmsg("", cut), "6.12.117");
    assert_eq!(kinds(&v), vec![FindingKind::Crash]);
}

/// A known finding with that title and no note or evidence.
fn known(title: &str) -> KnownFinding {
    KnownFinding {
        title: title.into(),
        note: String::new(),
        evidence: String::new(),
    }
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
    sc.known_finding = Some(known("^FSM: impossible_state on 0\\.0\\.0000"));
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
        std::slice::from_ref(&consequence),
        &evidence("", RESET_RACE_TRACE),
        "6.12.117",
    );
    assert!(v.passed);
    assert!(v
        .known_finding
        .as_deref()
        .is_some_and(|k| k.starts_with("FSM: impossible_state on 0.0.0000")));
    assert!(
        kinds(&v).contains(&FindingKind::Step) && kinds(&v).contains(&FindingKind::FsmViolation)
    );
    // Without the bug the same scenario must be clean: a step mismatch alone fails it.
    let v = judge(&sc, &[consequence], &evidence("", UNPLUG_TRACE), "6.12.117");
    assert!(!v.passed);
    assert_eq!(kinds(&v), vec![FindingKind::Step]);
}

/// A kernel report is not the consequence of a known finding that is none: the debug run of
/// `unmap_vs_reset_outstanding` printed a lockdep cycle before its known FSM violation, and
/// passed as that violation until this rule. Suite-wide, the report is known on its own.
#[test]
fn a_kernel_report_beside_a_known_fsm_finding_fails_the_run() {
    let mut sc = scenario("");
    sc.known_finding = Some(known("^FSM: impossible_state on 0\\.0\\.0000"));
    let ev = evidence(UNMAP_LOCK_ORDER, RESET_RACE_TRACE);
    let v = judge(&sc, &[], &ev, "6.12.117");
    assert!(!v.passed, "{}", v.line());
    assert!(
        v.line()
            .starts_with("FAIL: possible deadlock in cp_iova_pinned"),
        "{}",
        v.line()
    );
    assert!(kinds(&v).contains(&FindingKind::FsmViolation));

    let everywhere = vec![KnownFinding {
        title: "^possible deadlock in cp_iova_pinned$".into(),
        note: "n".into(),
        evidence: "e".into(),
    }];
    let fsm = FsmReplay::new(&ev.trace, "6.12.117", None);
    let v = super::judge_knowing(&sc, &[], &ev, &fsm, &everywhere);
    assert!(v.passed, "{}", v.line());
    assert!(
        v.known_finding
            .as_deref()
            .is_some_and(|k| k.starts_with("FSM: impossible_state on 0.0.0000")),
        "{}",
        v.line()
    );
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
fn a_guest_that_powered_off_is_not_dead_and_one_that_did_not_is_hung() {
    let mut off = evidence(CLEAN_UNPLUG, "");
    off.alive = false;
    off.powered_off = Some(true);
    assert!(judge(&scenario(""), &[], &off, "6.12.117").passed);
    off.powered_off = Some(false);
    let v = judge(&scenario(""), &[], &off, "6.12.117");
    assert_eq!(kinds(&v), vec![FindingKind::Hang]);
    assert_eq!(v.findings[0].title, "guest did not power off");
    let mut restarted = off.clone();
    restarted.powered_off = Some(false);
    restarted.restart = true;
    let v = judge(&scenario(""), &[], &restarted, "6.12.117");
    assert_eq!(v.findings[0].title, "guest did not restart");
    assert_eq!(v.findings[0].key, "hang: restart");
    // Where QEMU said the vCPUs were, and the step's own words, not the runner's.
    restarted.shutdown_hung = Some(ShutdownHang {
        cpus: vec!["device_shutdown".into(), "arch_cpu_idle".into()],
        dump: "CPU 0: PSW".into(),
    });
    let v = judge(&scenario(""), &[], &restarted, "6.12.117");
    assert_eq!(
        v.findings[0].title,
        "guest did not restart (vCPUs in device_shutdown, arch_cpu_idle)"
    );
    assert!(v.findings[0]
        .detail
        .starts_with("the guest was told to restart and QEMU did not exit\nCPU 0: PSW"));
    // A crash in the shutdown path is the finding, not the power-off that never ended.
    let mut crashed = evidence(SEED_OOPS, "");
    crashed.alive = false;
    crashed.powered_off = Some(false);
    let v = judge(&scenario(""), &[], &crashed, "5.15.0-rc1");
    assert_eq!(kinds(&v), vec![FindingKind::Crash]);
}

#[test]
fn a_guest_that_does_not_power_off_after_a_clean_program_is_hung_unless_it_crashed() {
    let mut ev = evidence(CLEAN_UNPLUG, "");
    assert!(judge(&scenario(""), &[], &ev, "6.12.117").passed);
    ev.shutdown_hung = Some(ShutdownHang {
        cpus: vec![],
        dump: "task:kworker/0:1 state:D".into(),
    });
    let v = judge(&scenario(""), &[], &ev, "6.12.117");
    assert!(!v.passed);
    assert_eq!(kinds(&v), vec![FindingKind::Hang]);
    assert_eq!(v.findings[0].title, "guest did not power off");
    assert!(
        v.findings[0].detail.contains("task:kworker/0:1 state:D"),
        "{:?}",
        v.findings[0]
    );
    // Where QEMU said the vCPUs were goes into the title; the key stays the hang's.
    ev.shutdown_hung = Some(ShutdownHang {
        cpus: vec!["smp_send_stop".into(), "__kernel_map_pages".into()],
        dump: String::new(),
    });
    let v = judge(&scenario(""), &[], &ev, "6.12.117");
    assert_eq!(
        v.findings[0].title,
        "guest did not power off (vCPUs in smp_send_stop, __kernel_map_pages)"
    );
    assert_eq!(v.findings[0].key, "hang: poweroff");
    // An oops printed while shutting down is the finding, not the power-off it stopped.
    let mut crashed = evidence(SEED_OOPS, "");
    crashed.shutdown_hung = Some(ShutdownHang::default());
    let v = judge(&scenario(""), &[], &crashed, "5.15.0-rc1");
    assert_eq!(kinds(&v), vec![FindingKind::Crash]);
}

/// The emulator's list knows a power-off stuck with one vCPU in `smp_send_stop` (QEMU not
/// stopping the other), and nothing else that does not power off.
#[test]
fn a_power_off_waiting_in_smp_send_stop_is_the_known_qemu_bug_and_no_other_is() {
    let everywhere = crate::scenario::known_emulator().unwrap_or_else(|e| panic!("{e}"));
    let judge_with = |cpus: &[&str]| {
        let mut ev = evidence(CLEAN_UNPLUG, "");
        ev.shutdown_hung = Some(ShutdownHang {
            cpus: cpus.iter().map(|c| c.to_string()).collect(),
            dump: String::new(),
        });
        let fsm = FsmReplay::new(&ev.trace, "6.12.117", None);
        super::judge_knowing(&scenario(""), &[], &ev, &fsm, &everywhere)
    };
    for cpus in [
        ["smp_send_stop", "__kernel_map_pages"],
        ["wp_page_reuse", "smp_send_stop"],
    ] {
        let v = judge_with(&cpus);
        assert!(v.passed, "{cpus:?}: {:?}", v.findings);
        assert!(v.known_finding.is_some(), "{cpus:?}");
    }
    for cpus in [
        &["device_shutdown", "arch_cpu_idle"][..],
        &["vfio_ccw_sch_shutdown", "__kernel_map_pages"][..],
        &[][..],
    ] {
        assert!(!judge_with(cpus).passed, "{cpus:?}");
    }
}

#[test]
fn versions_from_releases() {
    assert_eq!(version_of("6.12.117"), (6, 12));
    assert_eq!(version_of("6.1.0-rc1+"), (6, 1));
    assert_eq!(version_of("5.15.0-rc1"), (5, 15));
    assert_eq!(version_of("garbage"), (0, 0));
}

#[test]
fn steps_abandoned_under_a_crash_are_its_consequences_other_step_failures_are_not() {
    let abandoned = record(
        Outcome::Failed {
            message: super::super::steps::ABANDONED.into(),
        },
        &["ok"],
        None,
    );
    let refused = record(
        Outcome::Errno {
            name: "EBUSY".into(),
            code: 16,
            call: "write remove".into(),
        },
        &["ok"],
        None,
    );
    let v = judge(
        &scenario(""),
        &[abandoned.clone(), refused],
        &evidence(SEED_OOPS, ""),
        "5.15.0-rc1",
    );
    assert_eq!(
        kinds(&v),
        vec![FindingKind::Crash, FindingKind::Step, FindingKind::Step]
    );
    let crash_key = v.findings[0].key.clone();
    assert_eq!(v.findings[1].fallout_of.as_ref(), Some(&crash_key));
    assert_eq!(
        v.findings[2].fallout_of, None,
        "a refusal is a finding of its own"
    );
    assert_eq!(v.primary().count(), 2);

    // Without a crash an abandoned step is not anyone's consequence.
    let v = judge(
        &scenario(""),
        &[abandoned],
        &evidence(CLEAN_UNPLUG, ""),
        "6.12.117",
    );
    assert_eq!(v.findings.len(), 1);
    assert_eq!(v.findings[0].fallout_of, None);
}

/// kmemleak's file as a kernel prints it (a real report from a public bug tracker, see the
/// world corpus README): one leak finding per call site, titled as syzkaller titles them.
const KMEMLEAK_REAL: &str =
    include_str!("../../tests/data/reports/world/irati-3.x-kmemleak-serdes-pdu-ser.log");
/// Recorded from the 6.12 debug profile (tests/data/kmemleak/README.md).
const KMEMLEAK_EVENTFD: &str =
    include_str!("../../tests/data/kmemleak/6.12-debug-eventfd-after-close.txt");
const KMEMLEAK_PLANTED: &str =
    include_str!("../../tests/data/kmemleak/6.12-debug-planted-leak-guest-cp.txt");

fn titles(v: &Verdict) -> Vec<&str> {
    v.findings.iter().map(|f| f.title.as_str()).collect()
}

#[test]
fn kmemleak_reports_are_leak_findings_by_call_site() {
    let mut ev = evidence(CLEAN_UNPLUG, "");
    ev.kmemleak = Some(Ok(KMEMLEAK_REAL.into()));
    let v = judge(&scenario(""), &[], &ev, "6.12.117");
    let leaks: Vec<&Finding> = v
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::Leak)
        .collect();
    assert!(!leaks.is_empty(), "{:?}", v.findings);
    assert_eq!(leaks[0].title, "memory leak in serdes_pdu_ser");
    assert_eq!(leaks[0].key, "leak: kmemleak in serdes_pdu_ser");
    let mut keys: Vec<&str> = leaks.iter().map(|f| f.key.as_str()).collect();
    keys.dedup();
    assert_eq!(keys.len(), leaks.len(), "one finding per call site");
    assert!(!v.passed);

    // The 6.12 form, recorded on the debug profile.
    ev.kmemleak = Some(Ok(KMEMLEAK_EVENTFD.into()));
    let v = judge(&scenario(""), &[], &ev, "6.12.117");
    assert_eq!(titles(&v), vec!["memory leak in do_eventfd"]);
    // The planted leak: ten objects from one call site are one finding.
    ev.kmemleak = Some(Ok(KMEMLEAK_PLANTED.into()));
    let v = judge(&scenario(""), &[], &ev, "6.12.117");
    assert_eq!(titles(&v), vec!["memory leak in vfio_ccw_mdev_init_dev"]);
    ev.kmemleak = Some(Ok(KMEMLEAK_REAL.into()));

    // Not judged when the scenario ignores leaks, after a crash, or with nothing reported.
    let ignored = scenario("[expect]\nleaks = \"ignore\"");
    assert!(judge(&ignored, &[], &ev, "6.12.117").passed);
    let mut crashed = evidence(SEED_OOPS, "");
    crashed.kmemleak = Some(Ok(KMEMLEAK_REAL.into()));
    let v = judge(&scenario(""), &[], &crashed, "5.15.0-rc1");
    assert_eq!(kinds(&v), vec![FindingKind::Crash]);
    ev.kmemleak = Some(Ok(String::new()));
    assert!(judge(&scenario(""), &[], &ev, "6.12.117").passed);

    // A reading that failed is lost evidence, not a pass.
    ev.kmemleak = Some(Err("kmemleak Scan: EBUSY".into()));
    let v = judge(&scenario(""), &[], &ev, "6.12.117");
    assert_eq!(kinds(&v), vec![FindingKind::EvidenceLost]);
}

/// A suite-wide known finding does not fail the run on its own, but does not hide anything
/// else either (unlike a scenario's own known_finding, which makes the run that bug).
#[test]
fn suite_wide_known_findings_settle_only_themselves() {
    let everywhere = vec![KnownFinding {
        title: "^memory leak in do_eventfd$".into(),
        note: "n".into(),
        evidence: "e".into(),
    }];
    let judge_with = |ev: &Evidence, release: &str| {
        let fsm = FsmReplay::new(&ev.trace, release, None);
        super::judge_knowing(&scenario(""), &[], ev, &fsm, &everywhere)
    };
    let mut ev = evidence(CLEAN_UNPLUG, "");
    ev.kmemleak = Some(Ok(KMEMLEAK_EVENTFD.into()));
    let v = judge_with(&ev, "6.12.117");
    assert!(v.passed, "{:?}", v.findings);
    assert_eq!(
        v.known_finding.as_deref(),
        Some("memory leak in do_eventfd")
    );
    assert_eq!(
        v.findings[0].known.as_deref(),
        Some("^memory leak in do_eventfd$")
    );
    assert!(v
        .line()
        .starts_with("KNOWN FINDING: memory leak in do_eventfd"));

    // Another leak beside it still fails the run.
    ev.kmemleak = Some(Ok(format!("{KMEMLEAK_EVENTFD}{KMEMLEAK_PLANTED}")));
    let v = judge_with(&ev, "6.12.117");
    assert!(!v.passed);
    assert!(
        v.line()
            .starts_with("FAIL: memory leak in vfio_ccw_mdev_init_dev"),
        "{}",
        v.line()
    );
}
