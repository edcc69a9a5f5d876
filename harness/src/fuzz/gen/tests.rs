use super::*;

#[test]
fn same_seed_same_program() {
    let g = Generator::default();
    for seed in [0u64, 1, 42, u64::MAX] {
        assert_eq!(g.generate(seed).program, g.generate(seed).program);
    }
    assert_ne!(g.generate(1).program, g.generate(2).program);
}

#[test]
fn every_program_validates_and_round_trips() {
    let g = Generator::default();
    for seed in 0..500u64 {
        let p = g.generate(seed).program;
        if let Err(e) = p.validate() {
            panic!("seed {seed}: {e}\n{}", p.to_toml());
        }
        let back = crate::scenario::parse_str(&p.to_toml(), &p.name, None)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}\n{}", p.to_toml()));
        assert_eq!(back, p, "seed {seed}");
    }
}

#[test]
fn some_programs_end_in_a_poweroff_or_reboot_that_runs_once() {
    let g = Generator::default();
    let (mut with, mut reboots) = (0, 0);
    for seed in 0..500u64 {
        let p = g.generate(seed).program;
        let offs = p
            .ops()
            .filter(|o| matches!(o, Op::Poweroff | Op::Reboot))
            .count();
        reboots += p.ops().filter(|o| matches!(o, Op::Reboot)).count();
        assert!(offs <= 1, "seed {seed}: {offs} poweroffs");
        if offs == 1 {
            with += 1;
            assert_eq!(
                p.race.repeat, 1,
                "seed {seed}: a powered-off guest runs no round 2"
            );
            assert!(
                p.actors[0]
                    .steps
                    .iter()
                    .any(|s| matches!(s.op(), Some(Op::Poweroff | Op::Reboot))),
                "seed {seed}: the first guest actor powers off"
            );
        }
    }
    assert!((10..80).contains(&with), "{with}/500 programs power off");
    assert!(
        reboots > 0 && reboots < with,
        "{reboots} of {with} endings are reboots"
    );
}

#[test]
fn invalid_share_is_a_minority_but_present() {
    let g = Generator::default();
    let (mut ops, mut bad) = (0, 0);
    for seed in 0..500u64 {
        let s = g.generate(seed).stats;
        ops += s.ops;
        bad += s.invalid;
    }
    let ratio = bad as f64 / ops as f64;
    // Programs start with every subchannel bound (the fuzz machine rests on vfio_ccw), so a
    // create on an unbound parent, once the commonest wrong step, needs an unbind first:
    // 2.9 % of 500 programs' operations are wrong on purpose (at least 3 % when they started
    // unbound).
    assert!((0.02..0.2).contains(&ratio), "invalid ratio {ratio}");
}

#[test]
fn programs_overlap_transitions() {
    let g = Generator::default();
    let mut multi = 0;
    let mut host = 0;
    for seed in 0..300u64 {
        let p = g.generate(seed).program;
        if p.actors.len() > 1 {
            multi += 1;
        }
        if p.host_actor().is_some() {
            host += 1;
        }
        for a in &p.actors {
            let racing = p.actors.len() > 1;
            assert_eq!(
                matches!(a.steps[0], Step::Barrier { .. }),
                racing,
                "racing actors start at the go barrier"
            );
            assert!(
                a.steps.len() <= 2 + 2 * g.config.max_ops_per_phase + 6,
                "actors stay short"
            );
        }
    }
    assert!(multi > 150, "{multi}/300 programs race two or more actors");
    assert!(host > 60, "{host}/300 programs involve the host");
}

/// A held request blocks removes and closes behind it: every actor releases what it
/// stalled before its program ends.
#[test]
fn every_stall_is_released_by_its_actor() {
    let g = Generator::default();
    let mut stalls = 0;
    for seed in 0..500u64 {
        let p = g.generate(seed).program;
        for a in &p.actors {
            let mut held: Vec<&str> = Vec::new();
            for st in &a.steps {
                match st {
                    Step::Op(s) => match &s.op {
                        Op::IoStall { handle, .. } => {
                            assert!(
                                !held.contains(&handle.as_str()),
                                "seed {seed}: stalled twice"
                            );
                            held.push(handle);
                            stalls += 1;
                        }
                        Op::IoRelease { handle, .. } => {
                            assert!(
                                held.contains(&handle.as_str()),
                                "seed {seed}: release of {handle} without a stall"
                            );
                            held.retain(|h| h != handle);
                        }
                        // The fuzzer's own hang of the first 10-minute clean run: an actor
                        // stalls a request, then resets the handle before releasing it.
                        Op::Reset { handle }
                        | Op::DmaUnmap { handle, .. }
                        | Op::Close { handle, .. }
                        | Op::ReadRegion { handle, .. }
                        | Op::BadInput { handle, .. } => assert!(
                            !held.contains(&handle.as_str()),
                            "seed {seed}: actor {} waits on {handle}, which it holds stalled:\n{}",
                            a.name,
                            p.to_toml()
                        ),
                        _ => {}
                    },
                    Step::Barrier { .. } => {}
                }
            }
            assert!(
                held.is_empty(),
                "seed {seed}: actor {} leaves {held:?} stalled",
                a.name
            );
        }
    }
    assert!(stalls > 30, "{stalls} stalls in 500 programs");
}

#[test]
fn all_generated_steps_expect_any() {
    let g = Generator::default();
    for seed in 0..100u64 {
        let p = g.generate(seed).program;
        for st in p
            .setup
            .iter()
            .chain(p.actors.iter().flat_map(|a| a.steps.iter()))
        {
            if let Step::Op(s) = st {
                assert_eq!(s.expect, vec![Expect::Any]);
            }
        }
    }
}

#[test]
fn on_a_fault_kernel_a_share_of_programs_fails_one_step_and_the_rest_stay_as_without() {
    let plain = Generator::new(GenConfig::for_kernel(false));
    let faulty = Generator::new(GenConfig::for_kernel(true));
    let faults_of = |p: &Scenario| {
        p.setup
            .iter()
            .chain(p.actors.iter().flat_map(|a| a.steps.iter()))
            .filter_map(|s| match s {
                Step::Op(o) => o.fail_nth,
                _ => None,
            })
            .collect::<Vec<u32>>()
    };
    let mut faulted = 0;
    for seed in 0..500u64 {
        let p = plain.generate(seed).program;
        assert!(
            faults_of(&p).is_empty(),
            "seed {seed}: a fault without fault injection"
        );
        let mut f = faulty.generate(seed).program;
        let nths = faults_of(&f);
        assert!(nths.len() <= 1, "seed {seed}: {nths:?}");
        if let Some(&n) = nths.first() {
            faulted += 1;
            assert!((1..=super::super::fault::MAX_FAIL_NTH).contains(&n));
            if let Err(e) = f.validate() {
                panic!("seed {seed}: {e}\n{}", f.to_toml());
            }
        }
        // Without its fault, the program is the one a kernel without fault injection gets.
        super::super::fault::faultable_steps(&mut f)
            .into_iter()
            .for_each(|s| s.fail_nth = None);
        assert_eq!(f, p, "seed {seed}");
    }
    // FAULT_SHARE of 500, less the few programs with no guest step that can take a fault.
    assert!((70..130).contains(&faulted), "{faulted} of 500 faulted");
}
