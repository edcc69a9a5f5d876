//! A phased scenario runs its phases in order in one VM, which is put back between them as
//! the fuzzer does between programs, and `ccwrig run`'s run directory holds each phase.

mod common;

/// Phase 1 hot-unplugs rng1 and leaves it unplugged; phase 2 binds its subchannel, which only
/// works if the VM was put back (the device re-added) in between; both phases in the VM that
/// booted once.
const PHASED: &str = r#"
description = "Unplug a device in phase 1; phase 2 uses it again in the same VM."

[[phase]]
description = "Unplug rng1 and leave it unplugged."

[phase.machine]
devices = [ { id = "rng0", devno = "fe.0.0002" }, { id = "rng1", devno = "fe.0.0003" } ]

[phase.actors.host]
steps = [ { op = "device_del", device = "rng1" } ]

[[phase]]
description = "The device is back: bind its subchannel to vfio_ccw and back."

[phase.machine]
devices = [ { id = "rng0", devno = "fe.0.0002" }, { id = "rng1", devno = "fe.0.0003" } ]

[phase.actors.user]
steps = [
  { op = "bind", schid = "0.0.0001", driver = "vfio_ccw" },
  { op = "bind", schid = "0.0.0001", driver = "io_subchannel" },
]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phases_run_in_order_in_one_vm_restored_between_them() {
    let dir = common::run_passing(PHASED, "phased_run").await;
    for f in ["phase1/steps.jsonl", "steps.jsonl", "console.log"] {
        assert!(dir.join(f).is_file(), "{f}");
    }
    let phase1 = std::fs::read_to_string(dir.join("phase1/steps.jsonl")).expect("phase 1 steps");
    assert!(phase1.contains("device_del"), "{phase1}");
    let last = std::fs::read_to_string(dir.join("steps.jsonl")).expect("phase 2 steps");
    assert!(
        last.contains("vfio_ccw") && !last.contains("device_del"),
        "{last}"
    );
    let console = std::fs::read_to_string(dir.join("console.log")).expect("console");
    assert_eq!(
        console.matches("Linux version").count(),
        1,
        "both phases ran in the VM that booted once"
    );
    // The run's scenario.toml is the phased file with every phase's seed: replayable.
    let ran = ccwrig::scenario::parse_file(&dir.join("scenario.toml")).expect("recorded");
    assert_eq!(ran.history.len(), 1);
    assert!(ran.history[0].race.seed.is_some() && ran.race.seed.is_some());
    assert!(
        common::qemu_pids(Some(std::process::id())).is_empty(),
        "no QEMU left behind"
    );
}
