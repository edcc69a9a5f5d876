//! Scenarios: what a run does. A scenario file (`scenarios/*.toml`, described for authors in
//! `scenarios/README.md`) is parsed strictly — every unknown key, wrong type or inconsistent
//! reference is an error at `file:line:col` — into a [`Scenario`], the one type the runner,
//! the CLI, the test harness and the fuzzer share.

mod emit;
mod error;
pub mod ids;
mod known;
mod model;
mod parse;
mod reader;
mod step;
mod validate;

use std::path::Path;

use ccwrig_proto::Op;

pub use error::ScenarioError;
pub use known::{known_emulator, known_everywhere, KNOWN_EVERYWHERE};
pub use model::*;

/// Reads and checks one scenario file; its name is the file stem.
pub fn parse_file(path: &Path) -> Result<Scenario, ScenarioError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
        file: shown.clone(),
        pos: None,
        path: String::new(),
        message: format!("cannot read: {e}"),
    })?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    parse_str(&text, &name, Some(path))
}

/// Parses and checks scenario text. `name` becomes [`Scenario::name`]; errors name `origin`
/// (or `name` when there is none).
pub fn parse_str(text: &str, name: &str, origin: Option<&Path>) -> Result<Scenario, ScenarioError> {
    let shown = origin.map_or_else(|| name.to_string(), |p| p.display().to_string());
    let parse::Parsed { scenario, spans } =
        parse::parse_document(text, name, origin).map_err(|l| l.into_error(&shown, Some(text)))?;
    let phased = !scenario.history.is_empty();
    for (i, (program, spans)) in scenario.phases().zip(&spans).enumerate() {
        let located =
            |i: validate::Issue| error::Located::new(spans.find(&i.path), i.path, i.message);
        let check = validate::validate(program)
            .map_err(located)
            .and_then(|()| match phased {
                true => validate::same_machine(&scenario.machine_of_phase(0), &program.machine)
                    .map_err(located),
                false => Ok(()),
            });
        check.map_err(|l| {
            let l = if phased {
                parse::in_phase(l, &reader::index("phase", i))
            } else {
                l
            };
            l.into_error(&shown, Some(text))
        })?;
    }
    Ok(scenario)
}

/// Every `*.toml` in `dir`, sorted by name. All errors are collected, so one bad file does not
/// hide another.
pub fn load_dir(dir: &Path) -> Result<Vec<Scenario>, Vec<ScenarioError>> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        vec![ScenarioError {
            file: dir.display().to_string(),
            pos: None,
            path: String::new(),
            message: format!("cannot list scenarios: {e}"),
        }]
    })?;
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    paths.sort();
    let (mut ok, mut errs) = (Vec::new(), Vec::new());
    for p in paths {
        match parse_file(&p) {
            Ok(s) => ok.push(s),
            Err(e) => errs.push(e),
        }
    }
    if errs.is_empty() {
        Ok(ok)
    } else {
        Err(errs)
    }
}

impl Scenario {
    /// Scenario file text that [`parse_str`] reads back to an equal scenario.
    pub fn to_toml(&self) -> String {
        emit::to_toml(self)
    }

    /// The checks [`parse_str`] makes, for scenarios built in code (the fuzzer, the shrinker).
    /// The error has a field path but no position.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let phased = !self.history.is_empty();
        for (i, program) in self.phases().enumerate() {
            let check = validate::validate(program).and_then(|()| match phased {
                true => validate::same_machine(&self.machine_of_phase(0), &program.machine),
                false => Ok(()),
            });
            check.map_err(|issue| ScenarioError {
                file: self
                    .path
                    .as_ref()
                    .map_or_else(|| self.name.clone(), |p| p.display().to_string()),
                pos: None,
                path: match phased {
                    true => {
                        parse::in_phase(
                            error::Located::new(None, issue.path, ""),
                            &reader::index("phase", i),
                        )
                        .path
                    }
                    false => issue.path,
                },
                message: issue.message,
            })?;
        }
        Ok(())
    }

    /// The programs in the order they run: the history phases, then this one.
    pub fn phases(&self) -> impl Iterator<Item = &Scenario> {
        self.history.iter().chain(std::iter::once(self))
    }

    /// The machine of the i-th phase (all phases share one VM, so validation compares them).
    fn machine_of_phase(&self, i: usize) -> Machine {
        self.phases()
            .nth(i)
            .map_or_else(|| self.machine.clone(), |p| p.machine.clone())
    }

    /// A phased scenario from programs in run order: the last one carries the others as its
    /// history, and the sequence's `name` and `description`. `None` when `programs` is empty.
    pub fn from_phases(
        mut programs: Vec<Scenario>,
        name: &str,
        description: &str,
    ) -> Option<Scenario> {
        let mut last = programs.pop()?;
        for (i, p) in programs.iter_mut().enumerate() {
            // As the parser names them, so that a sequence written out reads back equal.
            p.name = format!("{name}.phase{}", i + 1);
            p.history.clear();
        }
        last.name = name.to_string();
        last.description = description.to_string();
        last.history = programs;
        Some(last)
    }

    /// The phases as standalone programs (each without history), in run order. The last one
    /// keeps this scenario's name, description and known finding.
    pub fn into_phases(mut self) -> Vec<Scenario> {
        let mut out = std::mem::take(&mut self.history);
        out.push(self);
        out
    }

    /// Every operation of the scenario: setup, each actor's steps, teardown.
    pub fn ops(&self) -> impl Iterator<Item = &Op> {
        self.setup
            .iter()
            .chain(self.actors.iter().flat_map(|a| a.steps.iter()))
            .chain(self.teardown.iter())
            .filter_map(Step::op)
    }

    /// Whether the scenario hot-unplugs a device (its subchannel is then meant to be gone, and
    /// a VM that runs another program afterwards must get the device back).
    pub fn unplugs(&self) -> bool {
        self.ops().any(|o| matches!(o, Op::DeviceDel { .. }))
    }

    /// Whether the scenario shuts the guest down (poweroff, reboot, or the host's
    /// system_powerdown): its VM ends with it.
    pub fn shuts_down(&self) -> bool {
        self.ops()
            .any(|o| matches!(o, Op::Poweroff | Op::Reboot | Op::SystemPowerdown))
    }

    /// Whether the scenario stops the vCPUs (a VM reused afterwards must be resumed).
    pub fn stops(&self) -> bool {
        self.ops().any(|o| matches!(o, Op::Stop))
    }

    /// The host actor, if the scenario has one.
    pub fn host_actor(&self) -> Option<&Actor> {
        self.actors.iter().find(|a| a.is_host())
    }

    /// The barrier names actors meet at, sorted.
    pub fn barrier_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .actors
            .iter()
            .flat_map(|a| a.steps.iter())
            .filter_map(|s| match s {
                Step::Barrier { name, .. } => Some(name.as_str()),
                Step::Op(_) => None,
            })
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }
}
