//! `ccwrig run --vm shared`: scenarios of one machine shape run back to back in one VM, put
//! back between them; a scenario with a finding ends its VM; another shape gets its own VM.
//! Each scenario's directory holds its own slices of the VM's streams.

mod common;

use ccwrig::suite::shared_vm::{run_all, Placement, VmUse};
use ccwrig::suite::KernelChoice;

const TWO: &str = r#"[machine]
devices = [ { id = "rng0", devno = "fe.0.0002" }, { id = "rng1", devno = "fe.0.0003" } ]
"#;

fn scenario(name: &str, machine: &str, body: &str) -> ccwrig::scenario::Scenario {
    let text = format!("description = \"{name}\"\n{machine}\n{body}");
    ccwrig::scenario::parse_str(&text, name, None).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Runs `scenarios` in shared VMs one at a time (seed 7) under `base`: name -> (its
/// directory, its result).
async fn run_shared(
    scenarios: &[ccwrig::scenario::Scenario],
    base: &std::path::Path,
) -> std::collections::BTreeMap<String, (std::path::PathBuf, ccwrig::run::RunResult)> {
    let bz = common::fast_kernel();
    let mut results = std::collections::BTreeMap::new();
    run_all(
        scenarios,
        &KernelChoice::Prebuilt(bz),
        Some(7),
        ccwrig::vm::snapshot::BootMode::Auto,
        Placement::one_at_a_time(VmUse::Shared),
        base,
        |(sc, dir, r)| {
            results.insert(sc.name.clone(), (dir, r.expect("the run happens")));
        },
    )
    .await;
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenarios_share_a_vm_until_one_has_a_finding() {
    let base = common::run_dir("shared_vm");
    let scenarios = vec![
        // Leaves rng1 unplugged: the VM must get it back for the next scenario.
        scenario("unplugs", TWO, "[actors.host]\nsteps = [ { op = \"device_del\", device = \"rng1\" } ]"),
        scenario(
            "uses_rng1",
            TWO,
            "[actors.user]\nsteps = [ { op = \"bind\", schid = \"0.0.0001\", driver = \"vfio_ccw\" }, { op = \"bind\", schid = \"0.0.0001\", driver = \"io_subchannel\" } ]",
        ),
        // The parent is not bound to vfio_ccw: a failed step, a finding, so the VM ends with it.
        scenario(
            "fails",
            TWO,
            "[actors.user]\nsteps = [ { op = \"mdev_create\", parent = \"0.0.0001\", mdev = \"m1\" } ]",
        ),
        scenario("after_failure", TWO, "[actors.user]\nsteps = [ { op = \"list_subchannels\" } ]"),
        scenario(
            "other_shape",
            "[machine]\ndevices = [ { id = \"rng0\", devno = \"fe.0.0002\" } ]",
            "[actors.user]\nsteps = [ { op = \"list_subchannels\" } ]",
        ),
    ];
    let results = run_shared(&scenarios, &base).await;
    assert_eq!(results.len(), 5, "{:?}", results.keys());
    let vm = |n: &str| results[n].1.vm_dir.clone().expect("ran in a shared VM");
    for n in ["unplugs", "uses_rng1", "after_failure", "other_shape"] {
        let v = &results[n].1.verdict;
        assert!(
            v.passed && v.findings.is_empty(),
            "{n}: {} {:?}",
            v.line(),
            v.findings
        );
    }
    assert!(!results["fails"].1.verdict.passed);
    assert_eq!(
        vm("unplugs"),
        vm("uses_rng1"),
        "same shape, nothing wrong: one VM"
    );
    assert_eq!(vm("uses_rng1"), vm("fails"));
    assert_ne!(vm("fails"), vm("after_failure"), "a finding ends the VM");
    assert_ne!(
        vm("after_failure"),
        vm("other_shape"),
        "another shape, another VM"
    );
    // Each scenario has its own slice: the second one's steps and kernel log are its own.
    let (dir, _) = &results["uses_rng1"];
    let steps = std::fs::read_to_string(dir.join("steps.jsonl")).expect("steps");
    assert!(
        steps.contains("vfio_ccw") && !steps.contains("device_del"),
        "{steps}"
    );
    let console = std::fs::read_to_string(vm("unplugs").join("console.log")).expect("VM console");
    assert_eq!(
        console.matches("Linux version").count(),
        1,
        "the VM booted once"
    );
    assert!(
        common::qemu_pids(Some(std::process::id())).is_empty(),
        "no QEMU left behind"
    );
}

/// `ccwrig run --jobs 2`: fresh VMs run side by side, each scenario in its own VM and
/// directory; with `--jobs 1` the same two run one after the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_vms_run_jobs_at_once_each_scenario_in_its_own() {
    let bz = common::fast_kernel();
    let one = "[machine]\ndevices = [ { id = \"rng0\", devno = \"fe.0.0002\" } ]";
    let body = "[actors.host]\nsteps = [ { op = \"sleep\", ms = 500 } ]";
    let scenarios = vec![scenario("left", one, body), scenario("right", one, body)];
    for jobs in [2usize, 1] {
        let base = common::run_dir(&format!("fresh_jobs_{jobs}"));
        // name -> (start, end) on the host's clock, from when each result came in
        let mut spans = std::collections::BTreeMap::new();
        run_all(
            &scenarios,
            &KernelChoice::Prebuilt(bz.clone()),
            Some(7),
            ccwrig::vm::snapshot::BootMode::Auto,
            Placement {
                vm: VmUse::Fresh,
                jobs,
            },
            &base,
            |(sc, dir, r)| {
                let r = r.expect("the run happens");
                assert!(r.verdict.passed, "{}: {}", sc.name, r.verdict.line());
                assert!(r.vm_dir.is_none(), "{}: a fresh VM is its own", sc.name);
                assert_eq!(dir, base.join(&sc.name));
                let end = std::time::Instant::now();
                let start = end - std::time::Duration::from_millis(r.wall_ms);
                spans.insert(sc.name.clone(), (start, end));
            },
        )
        .await;
        assert_eq!(spans.len(), 2, "jobs {jobs}: {:?}", spans.keys());
        let (l, r) = (spans["left"], spans["right"]);
        let overlap = l.0 < r.1 && r.0 < l.1;
        assert_eq!(overlap, jobs > 1, "jobs {jobs}: {l:?} {r:?}");
        for n in ["left", "right"] {
            let console = std::fs::read_to_string(base.join(n).join("console.log"))
                .unwrap_or_else(|e| panic!("{n}'s console: {e}"));
            assert!(!console.is_empty(), "{n}'s console is its own");
        }
    }
    assert!(
        common::qemu_pids(Some(std::process::id())).is_empty(),
        "no QEMU left behind"
    );
}

/// `ccwrig run --vm shared --jobs 2`: two lanes take scenarios from one queue, each with a
/// shared VM of its own, side by side; a scenario that runs alone (its own known finding) gets
/// a fresh VM and leaves its lane's shared VM for the next one that shares.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_vms_run_in_lanes_side_by_side_and_survive_a_scenario_run_alone() {
    let bz = common::fast_kernel();
    let base = common::run_dir("shared_lanes");
    let one = "[machine]\ndevices = [ { id = \"rng0\", devno = \"fe.0.0002\" } ]";
    // Long enough that lanes one after the other would start their VMs seconds apart: the
    // first lane would run the four shared scenarios (3.2 s of sleep) before the second began.
    let body = "[actors.host]\nsteps = [ { op = \"sleep\", ms = 800 } ]";
    let alone = format!(
        "known_finding = {{ title = \"^never shown$\", note = \"n\", evidence = \"e\" }}\n{one}"
    );
    let scenarios = vec![
        scenario("a", one, body),
        scenario("b", one, body),
        scenario("alone", &alone, body),
        scenario("c", one, body),
        scenario("d", one, body),
    ];
    // The machine's VM snapshot first, if this is its first use: taking it would hold back
    // the second lane's start.
    let warm = [scenario(
        "warm",
        one,
        "[actors.user]\nsteps = [ { op = \"list_subchannels\" } ]",
    )];
    run_all(
        &warm,
        &KernelChoice::Prebuilt(bz.clone()),
        Some(7),
        ccwrig::vm::snapshot::BootMode::Auto,
        Placement::one_at_a_time(VmUse::Fresh),
        &base,
        |(_, _, r)| assert!(r.expect("the run happens").verdict.passed),
    )
    .await;
    // name -> its shared VM
    let mut runs = std::collections::BTreeMap::new();
    run_all(
        &scenarios,
        &KernelChoice::Prebuilt(bz),
        Some(7),
        ccwrig::vm::snapshot::BootMode::Auto,
        Placement {
            vm: VmUse::Shared,
            jobs: 2,
        },
        &base,
        |(sc, _, r)| {
            let r = r.expect("the run happens");
            assert!(r.verdict.passed, "{}: {}", sc.name, r.verdict.line());
            runs.insert(sc.name.clone(), r.vm_dir.clone());
        },
    )
    .await;
    assert_eq!(runs.len(), 5, "{:?}", runs.keys());
    assert!(
        runs["alone"].is_none(),
        "a known finding's scenario runs alone"
    );
    let shared: std::collections::BTreeSet<_> = ["a", "b", "c", "d"]
        .iter()
        .map(|n| runs[*n].clone().expect("ran in a shared VM"))
        .collect();
    assert_eq!(
        shared.len(),
        2,
        "one shared VM per lane, kept across the scenario run alone: {shared:?}"
    );
    // Both VMs ran at once: they started together, not one lane after the other.
    let boots: Vec<std::time::SystemTime> = shared
        .iter()
        .map(|d| {
            std::fs::metadata(d.join("qemu.cmdline"))
                .and_then(|m| m.modified())
                .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
        })
        .collect();
    let apart = boots[0]
        .duration_since(boots[1])
        .or_else(|_| boots[1].duration_since(boots[0]))
        .unwrap_or_default();
    assert!(
        apart < std::time::Duration::from_secs(2),
        "the lanes' VMs started {apart:?} apart: one after the other, not side by side"
    );
    assert!(
        common::qemu_pids(Some(std::process::id())).is_empty(),
        "no QEMU left behind"
    );
}

/// A machine at rest on vfio_ccw (the fuzzer's): a program that leaves a subchannel under
/// io_subchannel gets it back with vfio_ccw from its cleanup, once its ccw device is online,
/// and passes the device-state check; the next program in the VM finds both subchannels with
/// vfio_ccw and no ccw device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn programs_at_rest_on_vfio_ccw_leave_their_subchannels_there() {
    let base = common::run_dir("rest_vfio_ccw");
    let machine = format!("{TWO}rest = \"vfio_ccw\"\n");
    let setup = "[[setup]]\nop = \"bind\"\nschid = \"0.0.0000\"\ndriver = \"vfio_ccw\"\n\n[[setup]]\nop = \"bind\"\nschid = \"0.0.0001\"\ndriver = \"vfio_ccw\"\n";
    let scenarios = vec![
        scenario(
            "leaves_io_subchannel",
            &machine,
            &format!("{setup}\n[actors.user]\nsteps = [ {{ op = \"bind\", schid = \"0.0.0001\", driver = \"io_subchannel\" }} ]"),
        ),
        scenario(
            "finds_them_parked",
            &machine,
            "[actors.user]\nsteps = [ { op = \"list_subchannels\" } ]",
        ),
    ];
    let results = run_shared(&scenarios, &base).await;
    assert_eq!(results.len(), 2, "{:?}", results.keys());
    for (n, (_, r)) in &results {
        assert!(
            r.verdict.passed && r.verdict.findings.is_empty(),
            "{n}: {} {:?}",
            r.verdict.line(),
            r.verdict.findings
        );
    }
    assert_eq!(
        results["leaves_io_subchannel"].1.vm_dir, results["finds_them_parked"].1.vm_dir,
        "one VM"
    );
    let record = |n: &str, op: &str| -> serde_json::Value {
        let steps = std::fs::read_to_string(results[n].0.join("steps.jsonl")).expect("steps");
        steps
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a step record"))
            .find(|v| v["op"]["op"] == op)
            .unwrap_or_else(|| panic!("{n}: no {op} in {steps}"))
    };
    // The cleanup waited for 0.0.0001's ccw device before it gave the subchannel back.
    let cleanup = record("leaves_io_subchannel", "cleanup");
    let parked: Vec<&serde_json::Value> = cleanup["data"]["steps"]
        .as_array()
        .expect("the cleanup's steps")
        .iter()
        .filter(|s| s.get("park").is_some())
        .collect();
    assert_eq!(parked.len(), 1, "{cleanup}");
    assert_eq!(parked[0]["schid"], "0.0.0001", "{cleanup}");
    assert!(parked[0]["ccw"]["online_after_ms"].is_u64(), "{cleanup}");
    let list = record("finds_them_parked", "list_subchannels");
    for schid in ["0.0.0000", "0.0.0001"] {
        let s = list["data"]["subchannels"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["schid"] == schid))
            .unwrap_or_else(|| panic!("{schid} not listed: {list}"));
        assert_eq!(s["driver"], "vfio_ccw", "{list}");
        assert!(s["ccw_device"].is_null(), "{list}");
    }
    assert!(
        common::qemu_pids(Some(std::process::id())).is_empty(),
        "no QEMU left behind"
    );
}
