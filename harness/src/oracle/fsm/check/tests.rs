use super::super::{map_for_version, Rule};
use super::check;

fn rules(trace: &str) -> Vec<Rule> {
    let map = map_for_version(6, 12).expect("6.12 map");
    check(trace.lines(), map)
        .violations
        .iter()
        .map(|v| v.rule)
        .collect()
}

// Sequences observed on 6.12.117 (docs/DESIGN.md: 'Binding, creating and opening an mdev',
// 'The FSM table', 'Channel I/O through the I/O region'; and the corpus logs), in the exact
// trace_pipe format.
#[test]
fn legal_sequences_pass() {
    let open_close = "\
         ccwhold-53      [001] .....     2.383718: vfio_ccw_fsm_event: schid=0.0.0000 state=1 event=4
         ccwhold-53      [001] .....     3.431911: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=5
         ccwhold-54      [001] .....     3.472817: vfio_ccw_fsm_event: schid=0.0.0000 state=1 event=4
         ccwhold-54      [001] .....     3.473988: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=5";
    assert_eq!(rules(open_close), vec![]);
    let unplug = "\
         ccwhold-53      [000] .....     2.424146: vfio_ccw_fsm_event: schid=0.0.0000 state=1 event=4
         kmcheck-40      [001] d....     3.758209: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=0
         ccwhold-53      [000] .....     8.679797: vfio_ccw_fsm_event: schid=0.0.0000 state=0 event=5";
    assert_eq!(rules(unplug), vec![]);
    let shutdown_never_opened = "\
        poweroff-60      [000] .....     9.000001: vfio_ccw_fsm_event: schid=0.0.0000 state=1 event=5
        poweroff-60      [000] .....     9.000002: vfio_ccw_fsm_event: schid=0.0.0000 state=0 event=0";
    assert_eq!(rules(shutdown_never_opened), vec![]);
    let io = "\
            ccwio-70      [000] .....     4.000001: vfio_ccw_fsm_event: schid=0.0.0000 state=1 event=4
            ccwio-70      [000] .....     4.000002: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=1
          <idle>-0        [000] d.h..     4.000003: vfio_ccw_fsm_event: schid=0.0.0000 state=4 event=2
            ccwio-70      [000] .....     4.000004: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=1
          <idle>-0        [000] d.h..     4.000005: vfio_ccw_fsm_event: schid=0.0.0000 state=4 event=2
            ccwio-70      [000] .....     4.000006: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=5";
    assert_eq!(rules(io), vec![]);
    // A failed request of one task with another task's harmless event in between (an
    // unsolicited interrupt leaves CP_PROCESSING alone) and a failed request that is the
    // last event: both end IDLE, nothing overwritten.
    let failed_io = "\
            ccwio-70      [000] .....     4.000001: vfio_ccw_fsm_event: schid=0.0.0000 state=1 event=4
            ccwio-70      [000] .....     4.000002: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=1
          <idle>-0        [000] d.h..     4.000003: vfio_ccw_fsm_event: schid=0.0.0000 state=3 event=2
            ccwio-70      [000] .....     4.000004: vfio_ccw_fsm_io_request: schid=0.0.0000 fctl=0x4 errno=-16 info=cp fsm_io_helper
            ccwio-70      [000] .....     4.000005: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=1
            ccwio-70      [000] .....     4.000006: vfio_ccw_fsm_io_request: schid=0.0.0000 fctl=0x4 errno=-16 info=cp fsm_io_helper
            ccwio-70      [000] .....     4.000007: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=5";
    assert_eq!(rules(failed_io), vec![]);
}

#[test]
fn violations_are_flagged() {
    let open_in_idle = "\
            qemu-70      [000] .....     4.000001: vfio_ccw_fsm_event: schid=0.0.0000 state=1 event=4
            qemu-71      [001] .....     4.000002: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=4";
    assert_eq!(rules(open_in_idle), vec![Rule::OpenOutsideStandby]);
    let resurrection = "\
         kmcheck-40      [001] d....     3.758209: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=0
            qemu-70      [000] .....     3.800000: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=1";
    assert_eq!(rules(resurrection), vec![Rule::Resurrection]);
    // unplug_during_io_loop on 6.12.117: the hot-unplug's NOT_OPER lands while the
    // request is in CP_PROCESSING; the ssch gets cc 3 and the error exit stores IDLE.
    let lost_update = "\
          user-6-60      [001] .....     1.188281: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=1
         kmcheck-40      [001] d....     1.191124: vfio_ccw_fsm_event: schid=0.0.0000 state=3 event=0
          user-6-60      [001] .....     1.191831: vfio_ccw_fsm_io_request: schid=0.0.0000 fctl=0x4 errno=-19 info=cp fsm_io_helper
          user-7-63      [001] .....     1.202943: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=5
          user-7-63      [001] .....     1.203125: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=0";
    assert_eq!(rules(lost_update), vec![Rule::LostUpdate]);
    let map = map_for_version(6, 12).expect("6.12 map");
    let report = check(lost_update.lines(), map);
    assert_eq!(report.violations[0].ts, 1.191831);
    assert!(
        report.violations[0]
            .message
            .contains("stored IDLE over NOT_OPER (NOT_OPER event of kmcheck-40 at 1.191124)"),
        "{}",
        report.violations[0].message
    );
    // The same race, other orders (6.12.117 runs of the same scenario). The request reads
    // IDLE while fsm_notoper, dispatched 71 us earlier on the other CPU, has not stored
    // NOT_OPER yet; the CLOSE then finds IDLE: the request's store came last.
    let overlap = "\
         kmcheck-39      [001] d....     1.058072: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=0
          user-6-60      [000] .....     1.058143: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=1
          user-6-60      [000] .N...     1.058491: vfio_ccw_fsm_io_request: schid=0.0.0000 fctl=0x4 errno=-19 info=cp fsm_io_helper
          user-7-63      [000] .....     1.075509: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=5
          user-7-63      [000] .....     1.075707: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=0";
    assert_eq!(rules(overlap), vec![Rule::LostUpdate]);
    // The error exit is traced after fsm_notoper's event, but its IDLE store landed
    // before fsm_notoper's NOT_OPER store: the CLOSE finds NOT_OPER. Nothing was lost.
    let exit_first = "\
          user-6-59      [001] .....     1.158723: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=1
         kmcheck-39      [000] d....     1.159057: vfio_ccw_fsm_event: schid=0.0.0000 state=3 event=0
          user-6-59      [001] .N...     1.159357: vfio_ccw_fsm_io_request: schid=0.0.0000 fctl=0x4 errno=-19 info=cp fsm_io_helper
          user-7-62      [000] .....     1.174958: vfio_ccw_fsm_event: schid=0.0.0000 state=0 event=5";
    assert_eq!(rules(exit_first), vec![]);
    // Reading the old state long after fsm_notoper ran is no overlap: a resurrection.
    let late = "\
         kmcheck-39      [001] d....     1.058072: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=0
          user-6-60      [000] .....     1.068143: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=1";
    assert_eq!(rules(late), vec![Rule::Resurrection]);
    // A fuzz program's reset races the hot-unplug: the CLOSE and fsm_notoper both read
    // IDLE, the CLOSE fails into its nested NOT_OPER, the reset's OPEN is a nop. Nothing
    // overwrote anything a correct driver must keep.
    let reset_vs_unplug = "\
        setup-18-85      [001] .....     2.286627: vfio_ccw_fsm_event: schid=0.0.0001 state=1 event=4
           g0-19-87      [001] .....     2.293407: vfio_ccw_fsm_event: schid=0.0.0001 state=2 event=5
         kmcheck-40      [000] d....     2.293513: vfio_ccw_fsm_event: schid=0.0.0001 state=2 event=0
           g0-19-87      [001] .....     2.293981: vfio_ccw_fsm_event: schid=0.0.0001 state=0 event=0
           g0-19-87      [001] .....     2.294056: vfio_ccw_fsm_event: schid=0.0.0001 state=0 event=4
           g0-20-90      [000] .....     2.318140: vfio_ccw_fsm_event: schid=0.0.0001 state=0 event=1";
    assert_eq!(rules(reset_vs_unplug), vec![]);
    // reset_during_io_loop: the reset's CLOSE and a request both read IDLE; the CLOSE
    // succeeds (no nested NOT_OPER), the failed request's IDLE store lands last, and the
    // reset's OPEN finds IDLE.
    let close_overlap = "\
    resetter-20-90       [000] .....     1.934061: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=5
          io-17-84       [001] .....     1.934154: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=1
          io-17-84       [001] .....     1.934300: vfio_ccw_fsm_io_request: schid=0.0.0000 fctl=0x4 errno=-19 info=cp fsm_io_helper
    resetter-20-90       [000] .....     1.934523: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=4";
    assert_eq!(
        rules(close_overlap),
        vec![Rule::LostUpdate, Rule::OpenOutsideStandby]
    );
    // An interrupt that read the state a CLOSE had not replaced yet stores nothing: when
    // the STANDBY is gone afterwards, the interrupt is not blamed for it.
    let irq_overlap = "\
            qemu-70      [000] .....     4.000001: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=5
          <idle>-0       [001] d.h..     4.000050: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=2
            qemu-70      [000] .....     4.000400: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=4";
    assert_eq!(rules(irq_overlap), vec![Rule::OpenOutsideStandby]);
    let close_standby = "\
            qemu-70      [000] .....     4.000001: vfio_ccw_fsm_event: schid=0.0.0000 state=1 event=5";
    assert_eq!(rules(close_standby), vec![Rule::CloseInStandby]);
    let user_io_on_dead = "\
         kmcheck-40      [001] d....     3.758209: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=0
            qemu-70      [000] .....     3.800000: vfio_ccw_fsm_event: schid=0.0.0000 state=0 event=1";
    assert_eq!(
        rules(user_io_on_dead),
        vec![],
        "a user's I/O on a dead device is rejected correctly"
    );
    let kernel_io_on_dead = "\
         kmcheck-40      [001] d....     3.758209: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=0
     kworker/0:1-12      [000] .....     3.800000: vfio_ccw_fsm_event: schid=0.0.0000 state=0 event=3";
    assert_eq!(rules(kernel_io_on_dead), vec![Rule::RequestWhileClosed]);
    let impossible = "\
            qemu-70      [000] .....     4.000001: vfio_ccw_fsm_event: schid=0.0.0000 state=1 event=4
            qemu-70      [000] .....     4.000002: vfio_ccw_fsm_event: schid=0.0.0000 state=3 event=5";
    assert_eq!(rules(impossible), vec![Rule::ImpossibleState]);
    let bad_map = "\
            qemu-70      [000] .....     4.000001: vfio_ccw_fsm_event: schid=0.0.0000 state=7 event=4";
    assert_eq!(rules(bad_map), vec![Rule::UnknownValue]);
}

#[test]
fn an_empty_jump_table_cell_is_its_own_violation() {
    // kernel/patches/notoper-open-null: the NOT_OPER row loses [VFIO_CCW_EVENT_OPEN].
    let mut map = map_for_version(6, 12).expect("6.12 map").clone();
    let (s, e) = (
        map.states.iter().position(|s| s == "NOT_OPER").unwrap(),
        map.events.iter().position(|e| e == "OPEN").unwrap(),
    );
    map.table[s][e] = "NULL".into();
    let reset_after_unplug = "\
         kmcheck-40      [001] d....     3.758209: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=0
            qemu-70      [000] .....     3.800000: vfio_ccw_fsm_event: schid=0.0.0000 state=0 event=5
            qemu-70      [000] .....     3.800001: vfio_ccw_fsm_event: schid=0.0.0000 state=0 event=4";
    let v = check(reset_after_unplug.lines(), &map).violations;
    assert_eq!(
        v.iter().map(|v| v.rule).collect::<Vec<_>>(),
        vec![Rule::NullHandler]
    );
    assert!(
        v[0].message.contains("OPEN in NOT_OPER"),
        "{}",
        v[0].message
    );
}

#[test]
fn subchannels_are_separate_and_final_states_known() {
    let map = map_for_version(6, 12).expect("map");
    let r = check(
        "\
 a-1 [000] ..... 1.000000: vfio_ccw_fsm_event: schid=0.0.0000 state=1 event=4
 b-2 [001] ..... 1.000001: vfio_ccw_fsm_event: schid=0.0.0001 state=1 event=4
 a-1 [000] ..... 1.000002: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=5"
            .lines(),
        map,
    );
    assert!(r.violations.is_empty());
    assert_eq!(
        r.final_states.get("0.0.0000").map(String::as_str),
        Some("STANDBY")
    );
    assert_eq!(
        r.final_states.get("0.0.0001").map(String::as_str),
        Some("IDLE")
    );
}

/// An interrupt in STANDBY is attributed to the START SUBCHANNEL it ends: vfio_ccw's own (the
/// starting task's previous event is its IO_REQ; a close that did not wait for it) stays
/// `interrupt_while_disabled`; anyone else's is `foreign_io` (the real trace of this case is
/// in the corpus: tests/data/fsm/6.12-foreign-ssch-interrupt.trace).
#[test]
fn interrupts_in_standby_name_who_started_the_io() {
    let map = map_for_version(6, 12).expect("6.12 map");
    let own = "\
            ccwio-70      [000] .....     4.000001: vfio_ccw_fsm_event: schid=0.0.0000 state=1 event=4
            ccwio-70      [000] .....     4.000002: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=1
            ccwio-70      [000] .....     4.000003: s390_cio_ssch: schid=0.0.0000 cc=0
            ccwio-70      [000] .....     4.000004: vfio_ccw_fsm_event: schid=0.0.0000 state=4 event=5
          <idle>-0        [000] d.h..     4.000005: vfio_ccw_fsm_event: schid=0.0.0000 state=1 event=2";
    let r = check(own.lines(), map);
    assert_eq!(
        r.violations.iter().map(|v| v.rule).collect::<Vec<_>>(),
        vec![Rule::InterruptWhileDisabled]
    );
    assert!(
        r.violations[0]
            .message
            .contains("vfio_ccw's own I/O, started by ccwio"),
        "{}",
        r.violations[0].message
    );
    // Without the start in the trace nothing is attributed.
    let unknown: String = own
        .lines()
        .filter(|l| !l.contains("s390_cio_ssch"))
        .collect::<Vec<_>>()
        .join("\n");
    let r = check(unknown.lines(), map);
    assert_eq!(r.violations[0].rule, Rule::InterruptWhileDisabled);
    assert!(!r.violations[0].message.contains("started"));
}
