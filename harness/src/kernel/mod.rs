//! Kernel builds: source (pinned tarball or a user's tree), an optional patch series, a config
//! from profile fragments, a cross build, and a content-addressed cache of the results.
//!
//! A cache entry is `cache::dir("kernels")/<key-short>/` holding `bzImage`, `vmlinux`,
//! `.config`, `build.log` and `meta.json`. `meta.json` is written last (atomic rename), so
//! an entry without it is an unfinished build and never a hit.

mod configure;
mod entry;
mod error;
pub mod fragment;
pub mod gcov;
mod incremental;
mod kconfig;
mod key;
mod lock;
mod make;
mod patched;
pub mod patches;
mod pin;
pub mod record;
mod sanitize;
mod source;

pub use entry::Kernel;
pub use error::KernelError;
pub use pin::versions as pinned_versions;
pub use record::KernelRecord;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Boots to /init in under a second; cheap detectors only.
    Fast,
    /// fast + KASAN, lockdep, debug objects, kmemleak, full debug info; ~10 s boots.
    Debug,
    /// fast + KASAN, debug objects, kmemleak, list debugging: debug's memory-lifetime half.
    Kasan,
    /// fast + lockdep and sleep-in-atomic checks: debug's locking half.
    Lockdep,
}

impl Profile {
    pub const ALL: [Profile; 4] = [
        Profile::Fast,
        Profile::Debug,
        Profile::Kasan,
        Profile::Lockdep,
    ];

    /// The profile a scenario or the command line names, or None for a name no profile has.
    pub fn from_name(name: &str) -> Option<Profile> {
        Profile::ALL.into_iter().find(|p| p.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Profile::Fast => "fast",
            Profile::Debug => "debug",
            Profile::Kasan => "kasan",
            Profile::Lockdep => "lockdep",
        }
    }

    /// How many times longer guest operations take than on the fast profile; waits that
    /// judge a run (how long a blocked operation may still finish) scale with it. Measured
    /// with the same operations on both 6.12 builds under TCG: rescan 14 -> 72 ms,
    /// list_subchannels 44 -> 441 ms, unbind 35 -> 216 ms, bind 22 -> 162 ms. The halves,
    /// measured against fast on the same seven scenarios in one `bench suite --compare
    /// profiles` (2026-12-03; median of each operation's ratio): kasan 2.6x (mdev_remove
    /// 4.8x), lockdep 2.4x (mdev_create 4.3x), debug 6.9x (mdev_remove 15.8x); the css walk
    /// after a bind to io_subchannel brings a ccw device online after 0.15 s (fast), 1.1 s
    /// (kasan), 6.4 s (lockdep), 10.5 s (debug), against the cleanup's 2 s times this factor.
    pub fn slowdown(self) -> u32 {
        match self {
            Profile::Fast => 1,
            Profile::Debug => 8,
            Profile::Kasan => 4,
            Profile::Lockdep => 6,
        }
    }

    /// The slowdown of this profile's build, with KCOV (`--cover`) or without.
    pub fn slowdown_with(self, cover: bool) -> u32 {
        if cover {
            self.slowdown().saturating_mul(COVER_SLOWDOWN)
        } else {
            self.slowdown()
        }
    }
}

/// How many times slower a KCOV build runs than the same profile without it: with the whole
/// kernel instrumented every basic block calls `__sanitizer_cov_trace_pc`, a helper call TCG
/// cannot inline. Measured on 6.12 fast: cold boot to the agent's hello 698 -> 1647 ms (2.4x).
/// Left at 1, a cover kernel's late auto-online and stuck-thread rechecks were judged by fast
/// bounds (the blind cover campaign of 2026-12-02: "not back online" with no unplug).
pub const COVER_SLOWDOWN: u32 = 3;

#[derive(Clone, Debug)]
pub struct BuildRequest {
    pub profile: Profile,
    /// Which pinned stable line (`kernel/pin.toml` `version`, e.g. `6.1`); `None`: the
    /// default (first) pin. Ignored with `tree`.
    pub version: Option<String>,
    /// A kernel tree to build instead of the pinned tarball (never written to).
    pub tree: Option<PathBuf>,
    /// A directory of `*.patch` files (sorted order) or one mbox file.
    pub patches: Option<PathBuf>,
    /// A full `.config` to start from instead of allnoconfig.
    pub config: Option<PathBuf>,
    /// KCOV on top of the profile (`kernel/configs/cover.config`): the agent can then report
    /// the kernel PCs each operation covered.
    pub cover: bool,
    /// make -j; defaults to the number of CPUs.
    pub jobs: Option<usize>,
    /// A spinner on stderr, and the log's tail on stderr when make fails.
    pub progress: bool,
}

impl BuildRequest {
    /// How many times slower than the fast profile the requested build runs.
    pub fn slowdown(&self) -> u32 {
        self.profile.slowdown_with(self.cover)
    }

    pub fn new(profile: Profile) -> Self {
        BuildRequest {
            profile,
            version: None,
            tree: None,
            patches: None,
            config: None,
            cover: false,
            jobs: None,
            progress: false,
        }
    }
}

/// Everything read from disk that the key and the build need.
struct Plan {
    source: source::Source,
    fragments: Vec<fragment::Fragment>,
    patches: Vec<patches::Patch>,
    user_config: Option<Vec<u8>>,
    compiler: String,
    /// Beyond `-jN bzImage`: objects the profile leaves uninstrumented, a cover build's GCOV
    /// objects.
    make_vars: Vec<String>,
    key: String,
    dir: PathBuf,
}

fn plan(req: &BuildRequest) -> Result<Plan, KernelError> {
    let compiler = compiler_version()?;
    let source = source::Source::new(req.tree.as_deref(), pin::pin_for(req.version.as_deref())?)?;
    let mut identity = source.identity()?;
    let mut fragments = fragment::for_build(req.profile, req.cover);
    if let Some(line) = source.line() {
        fragments.extend(fragment::overlays(&line));
    }
    let patches = match &req.patches {
        Some(p) => patches::series(p)?,
        None => Vec::new(),
    };
    if matches!(source, source::Source::Tree { .. }) && !patches.is_empty() {
        // Entries of patched tree builds made before `patched.rs` refreshed the files of the
        // previous series may hold that series' objects: never hand them out again.
        identity.push(("patched-tree-objects", b"refreshed per series".to_vec()));
    }
    let user_config = match &req.config {
        Some(p) => Some(std::fs::read(p).map_err(|source| KernelError::UserConfig {
            path: p.clone(),
            source,
        })?),
        None => None,
    };
    let mut make_vars = sanitize::make_vars(req.profile);
    if req.cover {
        make_vars.extend(gcov::make_vars());
        make_vars.extend(sanitize::cover_make_vars());
    }
    let k = key::compose(&key::Inputs {
        source: &identity,
        fragments: &fragments,
        patches: &patches,
        user_config: user_config.as_deref(),
        compiler: &compiler,
        make_vars: &make_vars,
    });
    let dir = crate::cache::dir("kernels")?.join(k.short());
    Ok(Plan {
        source,
        fragments,
        patches,
        user_config,
        compiler,
        make_vars,
        key: k.finish(),
        dir,
    })
}

/// The cross compiler's identity; also the check that it is installed at all.
fn compiler_version() -> Result<String, KernelError> {
    let gcc = format!("{}gcc", make::CROSS_COMPILE);
    let out = Command::new(&gcc).arg("--version").output();
    match out {
        Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .to_string()),
        _ => Err(KernelError::NoCrossCompiler { compiler: gcc }),
    }
}

/// The pristine pinned source tree of a stable line (`None`: the default pin), extracted into
/// the cache on first use, as builds use it: for tools that ship with the kernel (kunit.py).
pub fn pinned_source(version: Option<&str>) -> Result<PathBuf, KernelError> {
    source::Source::Pinned(pin::pin_for(version)?).prepare()
}

/// Looks the request up in the cache without building anything.
pub fn cached(req: &BuildRequest) -> Result<Option<Kernel>, KernelError> {
    let plan = plan(req)?;
    entry::load(&plan.dir, &plan.key)
}

/// Returns the cached kernel for the request, building it first if needed.
pub fn build(req: &BuildRequest) -> Result<Kernel, KernelError> {
    let plan = plan(req)?;
    if let Some(k) = entry::load(&plan.dir, &plan.key)? {
        return Ok(k);
    }
    let parent = plan.dir.parent().unwrap_or(Path::new("."));
    let name = plan
        .dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let _lock = lock::Lock::acquire(&parent.join(format!("{name}.lock")))?;
    // Someone else may have finished the same build while we waited for the lock.
    if let Some(k) = entry::load(&plan.dir, &plan.key)? {
        return Ok(k);
    }
    let built = build_locked(req, &plan);
    if built.is_err() {
        // The patched copy is only links but ~90k inodes; build.log and obj stay for reading.
        let _ = std::fs::remove_dir_all(plan.dir.join("src"));
    }
    built
}

/// make -j: the request's, else one per CPU.
fn jobs(req: &BuildRequest) -> usize {
    req.jobs
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
        .max(1)
}

/// `-jN bzImage` and the plan's variables.
fn make_args(jobs: usize, plan: &Plan) -> Vec<String> {
    let mut args = vec![format!("-j{jobs}"), "bzImage".into()];
    args.extend(plan.make_vars.iter().cloned());
    args
}

/// A tree build in its persistent work directory; the cache entry gets copies of the outputs.
fn build_incremental(
    req: &BuildRequest,
    plan: &Plan,
    runner: &mut make::Runner,
    work: &incremental::WorkDir,
    tree: PathBuf,
    started: Instant,
) -> Result<Kernel, KernelError> {
    let dir = &plan.dir;
    let obj = work.obj();
    let copy = if plan.patches.is_empty() {
        None
    } else {
        runner.phase(
            "patch",
            &format!("{} patches onto a copy of the tree", plan.patches.len()),
        );
        Some(patched::prepare(&tree, &plan.patches, &work.src(), &obj)?)
    };
    let src = copy.as_ref().map_or(tree, |c| c.src.clone());
    if work.configured() {
        runner.phase("config", "kept from the previous build of this tree");
    } else {
        runner.phase("config", req.profile.name());
        configure::configure(
            runner,
            &src,
            &obj,
            &plan.fragments,
            plan.user_config.as_deref(),
        )?;
        work.mark_configured()?;
    }
    let jobs = jobs(req);
    runner.phase("compile", &format!("make -j{jobs} bzImage (incremental)"));
    runner.make("make bzImage", &src, &obj, &make_args(jobs, plan))?;
    if let Some(c) = &copy {
        patched::built(c, &obj)?;
    }
    if req.cover {
        gcov::keep_notes(&obj, dir)?;
    }
    let staging = dir.join("obj");
    work.stage(&staging)?;
    let how = format!("incremental, objects in {}", obj.display());
    commit(req, plan, runner, &staging, &src, started, Some(&how))
}

/// Turns a finished build into a cache entry and says so.
fn commit(
    req: &BuildRequest,
    plan: &Plan,
    runner: &mut make::Runner,
    obj: &Path,
    src: &Path,
    started: Instant,
    how: Option<&str>,
) -> Result<Kernel, KernelError> {
    let kernel = entry::commit(entry::Finished {
        dir: &plan.dir,
        obj,
        src,
        log: runner.log_path(),
        key: &plan.key,
        profile: req.profile,
        cover: req.cover,
        source: plan.source.describe(),
        patches: plan.patches.iter().map(|p| p.name.clone()).collect(),
        build_seconds: started.elapsed().as_secs_f64(),
    })?;
    runner.finish(&format!(
        "{} built in {:.0} s{}: {}",
        kernel.release,
        started.elapsed().as_secs_f64(),
        how.map(|h| format!(" ({h})")).unwrap_or_default(),
        kernel.bzimage.display()
    ));
    Ok(kernel)
}

fn build_locked(req: &BuildRequest, plan: &Plan) -> Result<Kernel, KernelError> {
    let started = Instant::now();
    let dir = &plan.dir;
    // Leftovers of an interrupted build may hold half-written objects: start clean.
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(error::io("removing unfinished build", dir))?;
    }
    let obj = dir.join("obj");
    std::fs::create_dir_all(&obj).map_err(error::io("creating", &obj))?;
    let mut runner = make::Runner::new(&dir.join("build.log"), req.progress)?;

    runner.phase("extract", &plan.source.describe());
    let pristine = plan.source.prepare()?;

    // A user's tree is rebuilt after every edit: keep its objects between builds.
    if let source::Source::Tree { path, .. } = &plan.source {
        let work = incremental::WorkDir::open(&incremental::Inputs {
            tree: path,
            fragments: &plan.fragments,
            user_config: plan.user_config.as_deref(),
            compiler: &plan.compiler,
            patched: !plan.patches.is_empty(),
        })?;
        return build_incremental(req, plan, &mut runner, &work, pristine, started);
    }

    let src = if plan.patches.is_empty() {
        pristine
    } else {
        runner.phase(
            "patch",
            &format!("{} patches onto a copy of the source", plan.patches.len()),
        );
        let copy = dir.join("src");
        source::link_copy(&pristine, &copy)?;
        patches::apply(&plan.patches, &copy)?;
        copy
    };

    runner.phase("config", req.profile.name());
    configure::configure(
        &mut runner,
        &src,
        &obj,
        &plan.fragments,
        plan.user_config.as_deref(),
    )?;

    let jobs = jobs(req);
    runner.phase("compile", &format!("make -j{jobs} bzImage"));
    runner.make("make bzImage", &src, &obj, &make_args(jobs, plan))?;
    if req.cover {
        gcov::keep_notes(&obj, dir)?;
    }
    commit(req, plan, &mut runner, &obj, &src, started, None)
}
