//! Generated programs are scenario files `ccwrig run` accepts, and a short campaign runs them
//! in a real VM without harness errors.

mod common;

use std::time::Duration;

use ccwrig::fuzz::{campaign::program_seed, Campaign, CampaignConfig, GenConfig, Generator, Stop};
use ccwrig::run::RunOptions;

#[test]
fn generated_programs_are_runnable_scenario_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let g = Generator::default();
    for n in 0..300u64 {
        let p = g.generate(program_seed(20261123, n)).program;
        let path = dir.path().join(format!("{}.toml", p.name));
        std::fs::write(&path, p.to_toml()).expect("write");
        let back = ccwrig::scenario::parse_file(&path)
            .unwrap_or_else(|e| panic!("program {n}: {e}\n{}", p.to_toml()));
        assert_eq!(back.actors, p.actors, "program {n}");
        assert_eq!(back.setup, p.setup, "program {n}");
        assert_eq!(back.race, p.race, "program {n}");
    }
}

#[test]
fn a_campaign_seed_is_a_fixed_list_of_programs() {
    let (a, b) = (Generator::default(), Generator::new(GenConfig::default()));
    for n in 0..50u64 {
        assert_eq!(
            a.generate(program_seed(9, n)).program,
            b.generate(program_seed(9, n)).program
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_campaign_on_the_fast_kernel() {
    let bz = common::fast_kernel();
    let img = common::image();
    let dir = common::run_dir("fuzz_campaign");
    let cfg = CampaignConfig {
        seed: 1,
        stop: Stop::Programs(6),
        jobs: 1,
        corpus: dir.join("corpus"),
        work_dir: dir.join("work"),
        run: RunOptions::new(
            ccwrig::run::BootKernel::of_bzimage(&bz),
            img.initrd,
            dir.clone(),
        ),
        gen: GenConfig::default(),
        triage: None,
        guide: ccwrig::fuzz::guide::GuideConfig::default(),
        until_found: None,
    };
    let summary = tokio::time::timeout(Duration::from_secs(240), Campaign::new(cfg).run())
        .await
        .expect("six programs finish in time")
        .expect("campaign runs");
    assert_eq!(summary.programs, 6, "{}", summary.text());
    assert!(summary.errors.is_empty(), "{}", summary.text());
    // The FSM replay of real traces gives coverage; the 6.12 map has 30 cells with a handler.
    let c = &summary.coverage;
    assert_eq!(c.fsm_reachable, Some(30), "{}", summary.text());
    assert!(c.fsm_cells > 0, "{}", summary.text());
    assert!(
        c.inputs > 0,
        "new points kept as inputs\n{}",
        summary.text()
    );
    let (inputs, _) = ccwrig::fuzz::inputs::Inputs::open(&dir.join("corpus")).expect("inputs");
    assert!(inputs
        .entries()
        .iter()
        .all(|i| i.program.validate().is_ok()));
    assert!(
        common::qemu_pids(Some(std::process::id())).is_empty(),
        "no QEMU left behind"
    );
}

/// A generated program that powers the guest off is judged like any other (the shutdown's
/// console included), and the worker boots a fresh VM for the next program.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_ending_in_poweroff_is_judged_and_the_worker_boots_again() {
    use ccwrig::fuzz::worker::Worker;
    use ccwrig::machine::MachineSpec;
    use ccwrig::proto::Op;

    let bz = common::fast_kernel();
    let img = common::image();
    let dir = common::run_dir("fuzz_poweroff");
    let g = Generator::default();
    let (n, off) = (0..2000u64)
        .map(|n| (n, g.generate(program_seed(1, n)).program))
        .find(|(_, p)| p.ops().any(|o| matches!(o, Op::Poweroff)) && p.host_actor().is_none())
        .expect("the generator powers some programs off");
    let plain = (0..2000u64)
        .map(|n| g.generate(program_seed(1, n)).program)
        .find(|p| {
            !p.ops()
                .any(|o| matches!(o, Op::Poweroff | Op::DeviceDel { .. }))
        })
        .expect("and leaves most running");
    let machine = MachineSpec::of(&GenConfig::default().machine).expect("fuzz machine");
    let opts = RunOptions::new(
        ccwrig::run::BootKernel::of_bzimage(&bz),
        img.initrd,
        dir.clone(),
    );
    let mut w = Worker::new(0, opts, &machine);
    let first = w
        .run(&off, program_seed(1, n), &dir.join("p0"))
        .await
        .expect("the powered-off program runs");
    assert!(
        first.retired.is_some(),
        "a powered-off VM is not reused: {}",
        first.verdict.line()
    );
    assert!(
        !first
            .verdict
            .findings
            .iter()
            .any(|f| f.title == "guest stopped answering"),
        "a guest that powered off is not dead: {}",
        first.verdict.line()
    );
    let second = w
        .run(&plain, 7, &dir.join("p1"))
        .await
        .expect("the next program runs in a fresh VM");
    assert_eq!(w.boots, 2, "{}", second.verdict.line());
    w.retire().await;
    assert!(
        common::qemu_pids(Some(std::process::id())).is_empty(),
        "no QEMU left behind"
    );
}
