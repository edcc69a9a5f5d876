//! The standalone C reproducer of the seed-shaped scenario (`unplug_request_reset`, with the
//! seed of its recorded crashing run), cross-built with `s390x-linux-gnu-gcc -static` and run
//! in the guest through the agent's `exec`, with this host doing its hot-unplug over QMP:
//! on the kernel with the planted bug (kernel/patches/notoper-open-null) it crashes the
//! kernel with the title ccwrig's own run of the scenario recorded; on the clean kernel every
//! step ends as the scenario expects and the kernel stays quiet.
//!
//! Both boot VMs (the `qemu` test group); the planted kernel is built on first use, unless
//! `CCWRIG_PLANTED_BZIMAGE` names a bzImage already built with that patch (a CI cache).

mod common;

use std::path::{Path, PathBuf};

use ccwrig::kernel::{BuildRequest, Profile};
use ccwrig::repro_c::{self, build, guest, ExportOptions};
use ccwrig::scenario::Scenario;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The recorded run of the scenario on the planted kernel (the fixture `ccwrig report` is
/// tested on): its seed and its crash title.
fn recorded() -> (u64, String) {
    let run = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/symbolize/6.12-seed-notoper-open-run");
    let sc = ccwrig::scenario::parse_file(&run.join("scenario.toml")).expect("recorded scenario");
    let result: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run.join("result.json")).expect("recorded result.json"),
    )
    .expect("result.json is JSON");
    let title = result["verdict"]["crashes"][0]["title"]
        .as_str()
        .expect("the recorded run crashed")
        .to_string();
    (
        sc.race.seed.expect("the recorded scenario has its seed"),
        title,
    )
}

fn scenario() -> Scenario {
    ccwrig::scenario::parse_file(&repo().join("scenarios/unplug_request_reset.toml"))
        .expect("scenario parses")
}

fn planted_kernel() -> PathBuf {
    if let Some(p) = std::env::var_os("CCWRIG_PLANTED_BZIMAGE") {
        return PathBuf::from(p);
    }
    let mut req = BuildRequest::new(Profile::Fast);
    req.patches = Some(repo().join("kernel/patches/notoper-open-null"));
    match ccwrig::kernel::build(&req) {
        Ok(k) => k.bzimage,
        Err(e) => panic!("cannot build the planted kernel: {e}"),
    }
}

/// Exports and cross-builds the reproducer of `sc` into `dir`; returns the binary.
fn reproducer(sc: &Scenario, dir: &Path) -> PathBuf {
    assert!(
        build::available(build::CROSS_CC),
        "{} is missing: run `sudo ci/install-deps.sh`",
        build::CROSS_CC
    );
    let (seed, _) = recorded();
    let c = repro_c::export(
        sc,
        &ExportOptions {
            seed: Some(seed),
            ..Default::default()
        },
    )
    .expect("the scenario exports");
    let src = dir.join("repro.c");
    let bin = dir.join("repro");
    std::fs::write(&src, c).expect("write repro.c");
    build::compile(build::CROSS_CC, &src, &bin).unwrap_or_else(|e| panic!("{e}"));
    bin
}

async fn run_on(kernel: &Path, name: &str) -> guest::GuestRun {
    run_scenario_on(&scenario(), kernel, name).await
}

async fn run_scenario_on(sc: &Scenario, kernel: &Path, name: &str) -> guest::GuestRun {
    let dir = common::run_dir(name);
    let bin = reproducer(sc, &dir);
    let image = common::image();
    let r = guest::run(
        sc,
        kernel,
        &image.initrd,
        &bin,
        &["--kmsg".to_string()],
        &dir,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\nartifacts: {}", dir.display()));
    println!("artifacts: {}", dir.display());
    println!("host steps:\n{}", r.host_steps.join("\n"));
    println!("program output:\n{}", r.stdout);
    for c in &r.crashes {
        println!("crash: {}", c.title);
    }
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_reproducer_crashes_the_planted_kernel_with_the_recorded_title() {
    let (_, title) = recorded();
    let r = run_on(&planted_kernel(), "repro-c-planted").await;
    assert!(
        r.host_steps
            .iter()
            .any(|s| s.contains("device_del device=rng0 -> ok")),
        "the program's hot-unplug was not done: {:?}",
        r.host_steps
    );
    let titles: Vec<&str> = r.crashes.iter().map(|c| c.title.as_str()).collect();
    assert_eq!(
        titles.first().copied(),
        Some(title.as_str()),
        "crashes: {titles:?}\nconsole tail:\n{}",
        tail(&r.console)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_reproducer_runs_clean_on_the_clean_kernel() {
    let r = run_on(&common::fast_kernel(), "repro-c-clean").await;
    assert!(
        r.crashes.is_empty(),
        "crashes: {:?}\n{}",
        r.crashes.iter().map(|c| &c.title).collect::<Vec<_>>(),
        tail(&r.console)
    );
    let exec = r.exec.as_ref().expect("the program ended");
    assert_eq!(
        exec.outcome,
        ccwrig::proto::Outcome::Ok,
        "exit status not 0 (an unexpected step outcome):\n{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("done: 0 unexpected outcome(s)"),
        "{}",
        r.stdout
    );
    // The race's precondition happened while the program held the device: the unplug
    // relayed the device request to it, and its consumer answered with a reset.
    for want in [
        "MDEV: Unregistering",
        "Relaying device request to user (#0)",
    ] {
        assert!(
            r.kmsg.iter().any(|l| l.contains(want)),
            "kernel log lacks {want:?}"
        );
    }
    assert!(
        r.stdout.contains("device request #1: VFIO_DEVICE_RESET ->"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("reset handle=d -> EINVAL")
            || r.stdout.contains("reset handle=d -> ENODEV")
            || r.stdout.contains("reset handle=d -> ok"),
        "{}",
        r.stdout
    );
}

/// The C side lays out channel programs from the same encoder as the agent: every program of
/// the library's channel-program scenario gets the outcome the scenario expects (each
/// refusal's errno, each accepted program's interrupt) from the real kernel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_reproducer_channel_programs_get_the_expected_outcomes() {
    let sc = ccwrig::scenario::parse_file(&repo().join("scenarios/channel_programs.toml"))
        .expect("scenario parses");
    let r = run_scenario_on(&sc, &common::fast_kernel(), "repro-c-chanprog").await;
    assert!(r.crashes.is_empty(), "{}", tail(&r.console));
    assert!(
        r.stdout.contains("done: 0 unexpected outcome(s)"),
        "{}",
        r.stdout
    );
    // Refusals from the translation itself, not from the agent's or the C runtime's checks.
    assert!(r.stdout.contains("-> EINVAL"), "{}", r.stdout);
    assert!(r.stdout.contains("-> EOPNOTSUPP"), "{}", r.stdout);
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}
