//! Which steps of a program may get a fault (`fail_nth`, on a kernel with fault injection: the
//! cover build) and at which point: shared by the generator, which faults a share of fresh
//! programs, and the `fault` mutation, which sets, moves or drops one.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use ccwrig_proto::Op;

use crate::scenario::{OpStep, Scenario, Step};

/// Fault points an operation is asked to fail at. An mdev create passes more than 70 (sysfs,
/// kobjects and the driver core come first; vfio-ccw's own `init_dev` allocations are among
/// them, `harness/tests/data/fault_mdev_create.toml`): with the first 12 only, a 30-minute
/// campaign failed none of the driver's own allocations.
pub const MAX_FAIL_NTH: u32 = 64;

/// Most operations pass a handful of fault points (a channel program's translation allocates
/// its chain and page arrays, an open its regions), so half the draws stay among the first
/// [`SMALL_FAIL_NTH`]; the other half reach as far as an mdev create's.
const SMALL_FAIL_NTH: u32 = 8;

/// A fault point to fail: among the first few or anywhere up to [`MAX_FAIL_NTH`].
pub fn pick_nth(rng: &mut ChaCha8Rng) -> u32 {
    match rng.random_bool(0.5) {
        true => rng.random_range(1..=SMALL_FAIL_NTH),
        false => rng.random_range(1..=MAX_FAIL_NTH),
    }
}

/// Whether an operation may get a fault: guest work that reaches the kernel, not the agent's
/// own bookkeeping, waits and observations.
pub fn faultable(op: &Op) -> bool {
    op.side() == ccwrig_proto::Side::Guest
        && !matches!(
            op,
            Op::Sleep { .. }
                | Op::Mark { .. }
                | Op::Sysrq { .. }
                | Op::Snapshot
                | Op::Kmemleak { .. }
                | Op::Gcov { .. }
                | Op::Exec { .. }
                | Op::Cleanup { .. }
                | Op::Poweroff
                | Op::Reboot
        )
}

/// The guest steps (setup and guest actors) that may get a fault.
pub fn faultable_steps(p: &mut Scenario) -> Vec<&mut OpStep> {
    p.setup
        .iter_mut()
        .chain(
            p.actors
                .iter_mut()
                .filter(|a| !a.is_host())
                .flat_map(|a| a.steps.iter_mut()),
        )
        .filter_map(|s| match s {
            Step::Op(o) if faultable(&o.op) => Some(o),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn draws_cover_the_small_points_and_reach_an_mdev_creates() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let draws: Vec<u32> = (0..2000).map(|_| pick_nth(&mut rng)).collect();
        assert!(draws.iter().all(|n| (1..=MAX_FAIL_NTH).contains(n)));
        let small = draws.iter().filter(|n| **n <= SMALL_FAIL_NTH).count();
        // Half the draws are small by choice, and an eighth of the others fall there too.
        assert!((1000..1300).contains(&small), "{small} of 2000 small");
        assert!(draws.iter().any(|n| *n > 48), "no draw past 48");
    }

    #[test]
    fn agent_bookkeeping_and_host_steps_get_no_fault() {
        assert!(faultable(&Op::Rescan));
        assert!(!faultable(&Op::Poweroff));
        assert!(!faultable(&Op::Sleep { ms: 1 }));
        assert!(!faultable(&Op::Stop));
    }
}
