//! A step's `idle_ms`: a step that waits for a later step of its own actor is answered
//! `blocked` once the guest has been idle that long, not at its deadline; a step that keeps a
//! CPU busy for longer than that is not.

mod common;

/// g0's bind to io_subchannel unregisters the open vfio device and waits for its user, which is
/// g0's own close, the next step: without `idle_ms` it would be answered at its 5 s deadline.
/// g1 reads the I/O region 40000 times from two threads: CPU time all along, so its 100 ms
/// idle window never closes and it ends `ok`.
const WAITS: &str = r#"
description = "A bind that waits for its actor's own close, and a busy step beside it."

[machine]
devices = [ { id = "rng0", devno = "fe.0.0002" }, { id = "rng1", devno = "fe.0.0003" } ]

[[setup]]
op = "bind"
schid = "0.0.0001"
driver = "vfio_ccw"

[[setup]]
op = "mdev_create"
parent = "0.0.0001"
mdev = "m0"

[[setup]]
op = "open"
mdev = "m0"
handle = "h0"

[actors.g0]
steps = [
  { barrier = "go" },
  { op = "bind", schid = "0.0.0001", driver = "io_subchannel", deadline_ms = 5000, idle_ms = 250, expect = "blocked", label = "waits" },
  { op = "close", handle = "h0" },
]

[actors.g1]
steps = [
  { op = "region_access", handle = "h0", region = "io", access = "read", threads = 2, count = 40000, deadline_ms = 30000, idle_ms = 100, label = "busy" },
  { barrier = "go" },
]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_waiting_for_its_own_actor_is_blocked_once_idle_and_a_busy_one_is_not() {
    let dir = common::run_passing(WAITS, "idle_blocked").await;
    let steps = std::fs::read_to_string(dir.join("steps.jsonl")).expect("steps");
    let step = |label: &str| -> serde_json::Value {
        steps
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["label"] == label)
            .unwrap_or_else(|| panic!("no step {label} in {steps}"))
    };
    let waits = step("waits");
    assert_eq!(waits["outcome"]["kind"], "blocked", "{waits}");
    let after = waits["outcome"]["after_ms"].as_u64().expect("after_ms");
    assert!(
        (250..2500).contains(&after),
        "answered after {after} ms: at least its idle window, well before its 5 s deadline"
    );
    let busy = step("busy");
    assert_eq!(busy["outcome"]["kind"], "ok", "{busy}");
    let took = busy["answered_ms"].as_u64().unwrap_or(0) - busy["sent_ms"].as_u64().unwrap_or(0);
    assert!(
        took > 300,
        "the busy step ran {took} ms, longer than its 100 ms idle window (else it proves nothing)"
    );
    assert!(
        common::qemu_pids(Some(std::process::id())).is_empty(),
        "no QEMU left behind"
    );
}
