//! One test per `scenarios/*.toml` (file stem = test name), each in a fresh VM, judged by
//! the oracles. nextest runs each in its own process inside the `qemu` test group.

use std::path::PathBuf;

use ccwrig::suite::{self, KernelChoice};
use libtest_mimic::{Arguments, Failed, Trial};

fn run_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("scenario-runs")
        .join(name)
}

fn run(sc: ccwrig::scenario::Scenario) -> Result<(), Failed> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failed::from(e.to_string()))?;
    rt.block_on(async move {
        let image =
            ccwrig::image::build_for(sc.machine.nested).map_err(|e| Failed::from(e.to_string()))?;
        let dir = run_dir(&sc.name);
        // The last run's files would otherwise mix into this run's directory.
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Failed::from(format!("cannot clear {}: {e}", dir.display())))
            }
            _ => {}
        }
        let r = suite::run_one(
            &sc,
            &KernelChoice::pinned(),
            &image,
            None,
            Default::default(),
            dir.clone(),
        )
        .await
        .map_err(|e| Failed::from(format!("{e}\nartifacts: {}", dir.display())))?;
        println!(
            "{}: {} (seed {}, {} ms) artifacts: {}",
            sc.name,
            r.verdict.line(),
            r.seed,
            r.wall_ms,
            dir.display()
        );
        if r.verdict.passed {
            return Ok(());
        }
        let mut msg = format!("{}\n", r.verdict.line());
        for f in &r.verdict.findings {
            msg.push_str(&format!("- {}\n", f.title));
            if !f.detail.is_empty() {
                for l in f.detail.lines().take(30) {
                    msg.push_str(&format!("    {l}\n"));
                }
            }
        }
        msg.push_str(&format!(
            "artifacts: {}\nreplay: ccwrig run --seed {} {}\n",
            dir.display(),
            r.seed,
            sc.path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        ));
        Err(Failed::from(msg))
    })
}

fn main() {
    let args = Arguments::from_args();
    let trials = match ccwrig::scenario::load_dir(&suite::scenarios_dir()) {
        Ok(scenarios) => scenarios
            .into_iter()
            .map(|sc| Trial::test(sc.name.clone(), move || run(sc)))
            .collect(),
        // A broken scenario file is one failing test naming file:line:col, not a silent skip.
        Err(errors) => {
            let msg = errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n");
            vec![Trial::test("scenario_files_parse", move || {
                Err(Failed::from(msg))
            })]
        }
    };
    libtest_mimic::run(&args, trials).exit();
}
