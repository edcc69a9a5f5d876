//! Everything that can stop a kernel build, each with its cause and the fix in one line.

use crate::cache::CacheError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("{compiler} not found: run ci/install-deps.sh as root")]
    NoCrossCompiler { compiler: String },

    #[error("kernel source tarball {path} is missing: run ci/install-deps.sh as root (installs {deb_package})")]
    TarballMissing { path: PathBuf, deb_package: String },

    #[error("kernel source tarball {path} has sha256 {actual}, kernel/pin.toml expects {expected}: reinstall {deb_package} (ci/install-deps.sh) or fix the pin")]
    TarballChecksum {
        path: PathBuf,
        expected: String,
        actual: String,
        deb_package: String,
    },

    #[error("kernel/pin.toml is invalid: {0}")]
    Pin(String),

    #[error(transparent)]
    Cache(#[from] CacheError),

    #[error(
        "kernel tree {0} does not exist or is not a directory: pass the top of a Linux source tree"
    )]
    NoTree(PathBuf),

    #[error("kernel tree {tree} is not clean for an out-of-tree build ({found} exists): run make mrproper in {tree}")]
    TreeNotClean { tree: PathBuf, found: String },

    #[error("patch series {0} not found: pass a directory of *.patch files or one mbox file")]
    NoPatches(PathBuf),

    #[error("patch series {0} holds no patches: expected *.patch files, or an mbox with diffs")]
    EmptySeries(PathBuf),

    #[error("patch {patch} does not apply: {first_failure} (rebase the series onto this source)")]
    PatchFailed {
        patch: String,
        first_failure: String,
    },

    #[error("config file {path}: {source}: pass a readable kernel .config")]
    UserConfig {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{}", not_stuck_message(.fragment, .options))]
    ConfigNotStuck {
        fragment: String,
        options: Vec<String>,
    },

    #[error("{step} failed ({status}); full output in {}: fix the cause shown there and rerun", .log.display())]
    Make {
        step: String,
        status: String,
        log: PathBuf,
        tail: String,
    },

    #[error("{what} produced no {}: see {}", .missing.display(), .log.display())]
    MissingOutput {
        what: String,
        missing: PathBuf,
        log: PathBuf,
    },

    #[error("{action} {}: {source}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("could not run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },

    #[error("{command} failed in {}: {stderr}", .dir.display())]
    Tool {
        command: String,
        dir: PathBuf,
        stderr: String,
    },

    #[error("cache entry {}: bad meta.json ({source}); delete that directory to rebuild", .path.display())]
    Meta {
        path: PathBuf,
        source: serde_json::Error,
    },
}

fn not_stuck_message(fragment: &str, options: &[String]) -> String {
    format!(
        "config options of {fragment} did not stick after olddefconfig: {}; fix their dependencies in the fragment",
        options.join("; ")
    )
}

/// Shorthand for wrapping an `io::Error` with what was being done and to which path.
pub(crate) fn io(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> KernelError {
    let path = path.into();
    move |source| KernelError::Io {
        action,
        path,
        source,
    }
}
