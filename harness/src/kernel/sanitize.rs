//! Which objects a profile builds without a sanitizer's instrumentation, as make variables
//! (`KASAN_SANITIZE_<stem>.o=n` on the command line reaches every directory's Makefile; the
//! stems named here are unique in the tree, so no Makefile is edited).
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
}
