//! Tests of the operation enum: names, sides, defaults, serde forms.
use super::*;

#[test]
fn close_defaults_to_device_group_container() {
    let op: Op = serde_json::from_str(r#"{"op":"close","handle":"d"}"#).unwrap();
    assert_eq!(
        op,
        Op::Close {
            handle: "d".into(),
            order: vec![FdPart::Device, FdPart::Group, FdPart::Container]
        }
    );
}

#[test]
fn unknown_fields_are_rejected() {
    let r: Result<Op, _> = serde_json::from_str(r#"{"op":"reset","handle":"d","bogus":1}"#);
    assert!(r.is_err());
}

#[test]
fn name_matches_serde_tag() {
    let ops = [
        Op::Rescan,
        Op::Open {
            mdev: "m".into(),
            handle: "h".into(),
            via: OpenVia::Iommufd,
        },
        Op::Io {
            handle: "h".into(),
            count: 3,
            suspend: true,
            irq_wait_ms: 10,
            program: None,
        },
        Op::IoStall {
            handle: "h".into(),
            wait_ms: 10,
        },
        Op::IoRelease {
            handle: "h".into(),
            irq_wait_ms: 10,
        },
        Op::DeviceDel {
            device: "rng0".into(),
        },
        Op::DmaUnmap {
            handle: "h".into(),
            count: 2,
            remap: true,
        },
        Op::SetIrq {
            handle: "h".into(),
            irq: IrqKind::Crw,
            action: IrqAction::Remove,
            count: 5,
        },
        Op::Sysrq { key: 'w' },
        Op::InnerStart {
            name: "q".into(),
            mdev: "m".into(),
            devno: "fe.0.1234".into(),
            paused: true,
            memory_mib: 128,
            args: vec![],
            qmp_wait_ms: 1,
        },
        Op::InnerQmp {
            name: "q".into(),
            command: "query-status".into(),
            arguments: Some(serde_json::json!({"a": 1})),
        },
        Op::InnerSignal {
            name: "q".into(),
            signal: InnerSignal::Stop,
        },
        Op::InnerSystemReset {
            name: "q".into(),
            count: 3,
        },
    ];
    for op in ops {
        let v = serde_json::to_value(&op).unwrap();
        assert_eq!(v["op"], op.name());
        let back: Op = serde_json::from_value(v).unwrap();
        assert_eq!(back, op);
    }
}

/// NAMES is the enum's list: serde names every variant when it meets an unknown one, and
/// each name in NAMES is a variant serde knows.
#[test]
fn names_are_every_variant() {
    let e = serde_json::from_str::<Op>(r#"{"op":"no_such_op"}"#)
        .expect_err("unknown op accepted")
        .to_string();
    let listed = e
        .split_once("expected one of ")
        .map(|(_, l)| l)
        .unwrap_or_else(|| panic!("serde's message changed: {e}"));
    let serde_names: std::collections::BTreeSet<&str> = listed
        .split(", ")
        .map(|n| n.trim_matches(|c: char| c == '`' || c.is_whitespace()))
        .map(|n| n.split('`').next().unwrap_or(n))
        .collect();
    let ours: std::collections::BTreeSet<&str> = Op::NAMES.iter().copied().collect();
    assert_eq!(ours.len(), Op::NAMES.len(), "a name listed twice");
    assert_eq!(ours, serde_names, "serde said: {e}");
}

#[test]
fn inner_ops_are_guest_side_and_name_their_mdev() {
    let op: Op = serde_json::from_str(r#"{"op":"inner_start","name":"q","mdev":"m1"}"#).unwrap();
    assert_eq!(op.side(), Side::Guest);
    assert_eq!(op.mdev(), Some("m1"));
    assert_eq!(op.inner(), Some("q"));
    let Op::InnerStart { devno, paused, .. } = op else {
        panic!()
    };
    assert_eq!((devno.as_str(), paused), ("fe.0.1234", true));
}

#[test]
fn host_ops_are_host_side() {
    assert_eq!(Op::SystemReset.side(), Side::Host);
    assert_eq!(Op::Rescan.side(), Side::Guest);
    let host = [
        Op::DeviceDel { device: "d".into() },
        Op::DeviceAdd { device: "d".into() },
        Op::Stop,
        Op::Cont,
        Op::SystemReset,
        Op::SystemPowerdown,
    ];
    let names: Vec<&str> = host.iter().map(Op::name).collect();
    assert_eq!(names, Op::HOST_OPS);
    assert!(host.iter().all(|o| o.side() == Side::Host));
}
