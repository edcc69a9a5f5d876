//! Real kernel builds take minutes, so these are `#[ignore]`d: run them by hand with
//! `cargo test -p ccwrig --test kernel_build -- --ignored --nocapture`.

use ccwrig::kernel::{self, BuildRequest, Profile};
use std::time::{Duration, Instant};

fn build_then_hit(profile: Profile) {
    let req = BuildRequest::new(profile);
    let first = kernel::build(&req).unwrap();
    assert!(first.bzimage.is_file() && first.vmlinux.is_file());
    let config = std::fs::read_to_string(&first.config).unwrap();
    assert!(config.contains("CONFIG_VFIO_CCW=y") && config.contains("CONFIG_VFIO_DEVICE_CDEV=y"));

    let t = Instant::now();
    let second = kernel::build(&req).unwrap();
    let took = t.elapsed();
    eprintln!(
        "{profile:?}: {} in {}, second call {took:?}",
        first.release,
        first.dir.display()
    );
    assert!(second.cache_hit);
    assert_eq!(second.key, first.key);
    assert!(took < Duration::from_secs(1), "a cache hit took {took:?}");
    assert_eq!(
        kernel::cached(&req).unwrap().map(|k| k.key),
        Some(first.key)
    );
}

#[test]
#[ignore = "builds a kernel (minutes)"]
fn fast_kernel_builds_and_the_second_call_is_a_hit() {
    build_then_hit(Profile::Fast);
}

#[test]
#[ignore = "builds a kernel (minutes)"]
fn debug_kernel_builds_and_the_second_call_is_a_hit() {
    build_then_hit(Profile::Debug);
}
