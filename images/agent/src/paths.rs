//! Where the kernel shows the devices the agent works on. One place for the sysfs layout.

/// Subchannels (`0.0.0000`), with their `driver` link and `driver_override`.
pub const CSS_DEVICES: &str = "/sys/bus/css/devices";
/// ccw devices (`0.0.0002`), each a link to its place under its subchannel.
pub const CCW_DEVICES: &str = "/sys/bus/ccw/devices";
/// Mediated devices, by UUID.
pub const MDEV_DEVICES: &str = "/sys/bus/mdev/devices";

/// Writing to it returns once the channel subsystem has handled the channel reports pending
/// and finished evaluating subchannels (`cio_settle_write`, `drivers/s390/cio/css.c`).
pub const CIO_SETTLE: &str = "/proc/cio_settle";

/// kmemleak's control and report file (debugfs, mounted at boot).
pub const KMEMLEAK: &str = "/sys/kernel/debug/kmemleak";
/// GCOV's debugfs tree: `<object dir>/<object>.gcda` per profiled object, and `reset`.
pub const GCOV: &str = "/sys/kernel/debug/gcov";

/// A subchannel's sysfs directory.
pub fn subchannel(schid: &str) -> String {
    format!("{CSS_DEVICES}/{schid}")
}

/// An mdev's sysfs directory (also QEMU's `vfio-ccw,sysfsdev=`).
pub fn mdev(uuid: &str) -> String {
    format!("{MDEV_DEVICES}/{uuid}")
}

/// A channel path's sysfs directory (`0.00`: css 0, CHPID 0x00), with `status` (vary) and
/// `configure`.
pub fn chp(chpid: &str) -> String {
    format!("/sys/devices/css0/chp{chpid}")
}
