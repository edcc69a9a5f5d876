//! Which objects a build leaves without a sanitizer's or KCOV's instrumentation, as make
//! variables (`KASAN_SANITIZE_<stem>.o=n`, `KCOV_INSTRUMENT_<stem>.o=n` on the command line
//! reach every directory's Makefile; no Makefile is edited).
//!
//! lockdep's own code under KASAN: every lock acquisition and irq toggle of a debug kernel
//! runs `__lock_acquire` and friends, and KASAN checks each of their memory accesses, which
//! under TCG cost more than the rest of lockdep's work. Upstream stopped instrumenting
//! `lockdep.o` for the same reason after 6.12 ("locking/lockdep: Disable KASAN instrumentation
//! of lockdep.c", Waiman Long, February 2025: lockdep's tables are its own and static, and
//! what KASAN could find there is a bug of the debugging tool, not of the kernel under test).
//! The pinned 6.12 still instruments it; this brings the debug profile to what later kernels
//! build by default. Measured effect: `kernel/configs/README.md` (the paragraph on
//! `KASAN_SANITIZE_lockdep.o`).

use super::Profile;

/// The objects a cover build leaves without KCOV. s390's spinlock slow path
/// (`arch/s390/lib/spinlock.o`: `arch_spin_lock_wait`) spins on a contended lock, and under
/// TCG on a loaded host the holder's vCPU can be off its core for milliseconds: the spinning
/// step's KCOV buffer (256 Ki PCs) then fills with one loop and the step's coverage is cut
/// (seen in the kcov VM test during a full nextest run, 2026-12-05). Lock spinning is not the
/// driver's coverage; the generic locking code is excluded by `kernel/locking/Makefile`
/// already. The stem's other object in the tree, `kernel/locking/spinlock.o`, is excluded
/// there; the remaining ones are not built for s390.
const KCOV_EXEMPT: &[&str] = &["spinlock.o"];

/// The make variables a cover build adds.
pub fn cover_make_vars() -> Vec<String> {
    KCOV_EXEMPT
        .iter()
        .map(|o| format!("KCOV_INSTRUMENT_{o}=n"))
        .collect()
}

/// The objects `profile` builds without KASAN's instrumentation.
const KASAN_EXEMPT: &[&str] = &["lockdep.o"];

/// The make variables of `profile`'s build (empty for profiles without both KASAN and lockdep).
pub fn make_vars(profile: Profile) -> Vec<String> {
    match profile {
        Profile::Debug => KASAN_EXEMPT
            .iter()
            .map(|o| format!("KASAN_SANITIZE_{o}=n"))
            .collect(),
        Profile::Fast | Profile::Kasan | Profile::Lockdep => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_profile_with_both_kasan_and_lockdep_exempts_lockdep() {
        assert_eq!(
            make_vars(Profile::Debug),
            vec!["KASAN_SANITIZE_lockdep.o=n"]
        );
        for p in [Profile::Fast, Profile::Kasan, Profile::Lockdep] {
            assert!(make_vars(p).is_empty(), "{p:?}");
        }
    }

    #[test]
    fn a_cover_build_leaves_the_spinlock_slow_path_without_kcov() {
        assert_eq!(cover_make_vars(), vec!["KCOV_INSTRUMENT_spinlock.o=n"]);
    }
}
