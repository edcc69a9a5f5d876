//! KCOV end to end on the fast cover kernel: the basic lifecycle scenario's steps come back with
//! their PCs, those symbolize into drivers/s390/cio/vfio_ccw_*.c, and `ccwrig cover`'s report
//! marks lines of the driver covered. GCOV on the same kernel sees what KCOV cannot: the
//! interrupt handler, the I/O completion kworker and boot-time init.

mod common;

use ccwrig::coverage::report;
use ccwrig::coverage::sites::CALL_LEN;
use ccwrig::kernel::{self, BuildRequest, Profile};
use ccwrig::run::{run_scenario, BootKernel, RunOptions};
use ccwrig::symbolize::Symbolizer;

/// The fast cover kernel from the cache; `None` (the test is skipped) when it was not built.
fn cover_kernel() -> Option<kernel::Kernel> {
    let mut req = BuildRequest::new(Profile::Fast);
    req.cover = true;
    let k = kernel::cached(&req).expect("cache lookup");
    if k.is_none() {
        eprintln!("skipped: build the cover kernel with `ccwrig kernel build --cover`");
    }
    k
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cover_kernel_reports_pcs_that_symbolize_into_vfio_ccw() {
    let Some(k) = cover_kernel() else { return };
    let img = common::image();
    let dir = common::run_dir("kcov");
    // The whole mdev life, I/O included, with nothing racing.
    let path = ccwrig::suite::scenarios_dir().join("basic_lifecycle.toml");
    let sc = ccwrig::scenario::parse_file(&path).expect("parses");
    let opts = RunOptions::new(BootKernel::of_bzimage(&k.bzimage), img.initrd, dir.clone());
    let r = run_scenario(&sc, &opts).await.expect("the run happens");
    assert!(r.verdict.passed, "{}", r.verdict.line());

    let programs = report::collect(std::slice::from_ref(&dir)).expect("coverage.json");
    assert_eq!(programs.len(), 1, "{programs:?}");
    let p = &programs[0].1;
    assert_eq!(p.kernel, k.bzimage);
    // Every step traced, none lost to a full buffer; the PCs are left out of the message.
    assert!(
        p.traced >= 10 && p.full == 0 && p.unavailable.is_empty(),
        "traced {}, full {}, untraced {}, unavailable {:?}",
        p.traced,
        p.full,
        p.untraced,
        p.unavailable
    );

    let sym = Symbolizer::open(&k.vmlinux, Some(&k.src)).expect("vmlinux");
    let (stext, _) = sym.symbols().lookup("_stext", None).expect("_stext");
    let mut functions = std::collections::BTreeSet::new();
    let mut files = std::collections::BTreeSet::new();
    for pc in p.pcs.as_slice() {
        let site = stext.addr + pc - CALL_LEN;
        if let Some((f, _, _)) = sym.symbols().containing(site) {
            if f.starts_with("vfio_ccw") {
                functions.insert(f.to_string());
                // The function the call site was emitted in (inlined helpers from headers
                // come first in the chain).
                if let Some(file) = sym.locations(site).pop().and_then(|l| l.file) {
                    files.insert(file);
                }
            }
        }
    }
    for f in [
        "vfio_ccw_mdev_ioctl",
        "vfio_ccw_mdev_probe",
        "vfio_ccw_mdev_open_device",
    ] {
        assert!(functions.contains(f), "{f} not among {functions:?}");
    }
    assert!(
        !files.is_empty()
            && files
                .iter()
                .all(|f| f.starts_with("drivers/s390/cio/vfio_ccw_")),
        "{files:?}"
    );

    let prefixes = vec!["drivers/s390/cio/".to_string()];
    let rep = report::build(&programs, &prefixes).expect("report");
    let ops = &rep.files["drivers/s390/cio/vfio_ccw_ops.c"];
    let (covered, total) = ops.counts();
    assert!(covered > 0 && covered < total, "{covered}/{total}");
    assert!(rep.pcs_unplaced * 10 < rep.pcs_in_files, "{rep:?}");

    // GCOV: the program's counters (and, the VM's only program, the boot's) came back and
    // `gcov` read them with the kept notes. The interrupt handler and the I/O completion
    // kworker ran (the I/O completed) where no traced step's thread could see them; boot-time
    // init ran before any program.
    assert!(!p.gcov.is_empty(), "no gcov counters in coverage.json");
    let drv = &rep.gcov["drivers/s390/cio/vfio_ccw_drv.c"];
    let kcov_drv = &rep.files["drivers/s390/cio/vfio_ccw_drv.c"];
    for f in [
        "vfio_ccw_sch_irq",
        "vfio_ccw_sch_io_todo",
        "vfio_ccw_sch_init",
    ] {
        let (executed, total) = drv.counts_of(&drv.functions[f]);
        assert!(executed > 0, "gcov: {f} {executed}/{total}");
    }
    for f in ["vfio_ccw_sch_irq", "vfio_ccw_sch_io_todo"] {
        let (covered, _) = kcov_drv.function_counts(&kcov_drv.functions[f]);
        assert_eq!(
            covered, 0,
            "kcov saw {f}: it runs in interrupt or kworker context"
        );
    }
    assert_eq!(
        rep.gcov.len(),
        ccwrig::kernel::gcov::OBJECTS.len(),
        "{:?}",
        rep.gcov.keys()
    );

    // The fuzzer's scope keeps the driver's PCs of the run and drops most of the rest (the
    // agent's syscalls reach mm/, fs/, kernel/ too).
    let scope = ccwrig::coverage::scope::PcScope::of_kernel(
        &k.bzimage,
        ccwrig::coverage::scope::FUZZ_PREFIXES,
    )
    .expect("scope");
    let kept = scope.filter(&p.coverage());
    let (kept_pcs, _) = kept.counts();
    let (all_pcs, _) = p.coverage().counts();
    assert!(
        kept_pcs > 0 && kept_pcs * 2 < all_pcs,
        "{kept_pcs} of {all_pcs}"
    );
    for pc in kept.iter().filter_map(|pt| match pt {
        ccwrig::coverage::Point::Pc { pc } => Some(*pc),
        _ => None,
    }) {
        let file = sym
            .line(stext.addr + pc - CALL_LEN)
            .map(|(f, _)| f.replace("/./", "/"))
            .unwrap_or_default();
        assert!(
            ccwrig::coverage::scope::FUZZ_PREFIXES
                .iter()
                .any(|p| file.starts_with(p)),
            "{pc:#x} is in {file}"
        );
    }
}

/// Fault injection on the cover kernel: some of the seventy creates get their fault (ENOMEM,
/// and the step's record says it was injected), a read that passes fewer fault points than
/// its nth is said not to have got it, and vfio-ccw's own allocation failure path in
/// `vfio_ccw_mdev_init_dev` runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_faults_fail_allocations_and_gcov_sees_the_error_path() {
    let Some(k) = cover_kernel() else { return };
    let img = common::image();
    let dir = common::run_dir("fault");
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fault_mdev_create.toml");
    let sc = ccwrig::scenario::parse_file(&path).expect("parses");
    let opts = RunOptions::new(BootKernel::of_bzimage(&k.bzimage), img.initrd, dir.clone());
    let r = run_scenario(&sc, &opts).await.expect("the run happens");
    assert!(r.verdict.passed, "{}", r.verdict.line());

    // steps.jsonl: one record per step.
    let steps = std::fs::read_to_string(dir.join("steps.jsonl")).expect("steps.jsonl");
    let creates: Vec<serde_json::Value> = steps
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a step record"))
        .filter(|v| v["op"]["op"] == "mdev_create")
        .collect();
    assert_eq!(creates.len(), 70);
    let enomem = |v: &serde_json::Value| v["outcome"]["name"] == "ENOMEM";
    assert!(
        creates.iter().any(|v| v["fault"] == true && enomem(v)),
        "no create failed with an injected ENOMEM: {:?}",
        creates
            .iter()
            .map(|v| (v["outcome"].to_string(), v["fault"].to_string()))
            .collect::<Vec<_>>()
    );
    // A read passes fewer fault points than its 1000th: not injected, and it works.
    let read = steps
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a step record"))
        .find(|v| v["op"]["op"] == "available_instances")
        .expect("the last read");
    assert_eq!(read["fault"], false, "{read}");
    assert_eq!(read["outcome"]["kind"], "ok", "{read}");

    let programs = report::collect(std::slice::from_ref(&dir)).expect("coverage.json");
    let rep = report::build(&programs, &["drivers/s390/cio/".to_string()]).expect("report");
    let ops = &rep.gcov["drivers/s390/cio/vfio_ccw_ops.c"];
    let src = std::fs::read_to_string(k.src.join("drivers/s390/cio/vfio_ccw_ops.c"))
        .expect("driver source");
    let start = src
        .lines()
        .position(|l| l.starts_with("static int vfio_ccw_mdev_init_dev("))
        .expect("init_dev in the source");
    // The first line after `start` that reads `text` (trimmed), 1-based.
    let line_of = |text: &str| {
        src.lines()
            .enumerate()
            .skip(start)
            .find(|(_, l)| l.trim() == text)
            .map(|(i, _)| i as u32 + 1)
            .unwrap_or_else(|| panic!("{text} not in init_dev"))
    };
    let enomem = line_of("return -ENOMEM;");
    // gcov may put the return's code on the closing brace; KCOV (the create's own thread)
    // has its call site.
    let kcov_ops = &rep.files["drivers/s390/cio/vfio_ccw_ops.c"];
    assert!(
        ops.executed.contains(&enomem) || kcov_ops.lines.get(&enomem) == Some(&true),
        "line {enomem} (init_dev's -ENOMEM) not executed"
    );
    // The first error exit (its kcalloc failed) is GCOV's to see as well.
    let first_exit = line_of("goto out_free_private;");
    assert!(
        ops.executed.contains(&first_exit),
        "gcov: line {first_exit} not executed"
    );
}

/// A fault in a step that makes threads: the clone may get the injected failure, which the
/// agent must answer as the step's errno (a panicking spawn aborted the agent, which is init,
/// and the guest with it). Every step is answered and the device still does I/O.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_in_a_threaded_step_leaves_the_agent_up() {
    let Some(k) = cover_kernel() else { return };
    let img = common::image();
    let dir = common::run_dir("fault-threads");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/fault_threaded_step.toml");
    let sc = ccwrig::scenario::parse_file(&path).expect("parses");
    let opts = RunOptions::new(BootKernel::of_bzimage(&k.bzimage), img.initrd, dir.clone());
    let r = run_scenario(&sc, &opts).await.expect("the run happens");
    assert!(r.verdict.passed, "{}", r.verdict.line());
    let steps: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("steps.jsonl"))
        .expect("steps.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a step record"))
        .collect();
    let accesses: Vec<&serde_json::Value> = steps
        .iter()
        .filter(|v| v["op"]["op"] == "region_access")
        .collect();
    assert_eq!(accesses.len(), 12);
    assert!(
        accesses.iter().any(|v| v["fault"] == true),
        "no access step got its fault: {:?}",
        accesses
            .iter()
            .map(|v| v["outcome"].to_string())
            .collect::<Vec<_>>()
    );
    let io = steps
        .iter()
        .find(|v| v["op"]["op"] == "io")
        .expect("the io step");
    assert_eq!(io["outcome"]["kind"], "ok", "{io}");
}
