//! The inputs corpus: programs that added coverage, kept beside the findings as
//! `inputs/<hash>.toml` (a scenario `ccwrig run` accepts, with the seed it ran with) and
//! `inputs/<hash>.cover.json` (the points it covered when it was kept, and where it came
//! from). `<hash>` is of the program text, so the same program from two machines is one
//! file, and merging corpora is a plain directory union.
//!
//! Loading re-minimises: inputs are taken largest coverage first (then smallest program), and
//! one whose points the inputs already taken cover is redundant and its files are deleted. A
//! union of several machines' corpora so shrinks back to what covers their points together.

use std::path::{Path, PathBuf};

use rand::seq::IndexedRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::mutate::Mutation;
use super::shrink;
use super::FuzzError;
use crate::coverage::kcov::ProgramCover;
use crate::coverage::{Coverage, Point};
use crate::scenario::Scenario;

/// The directory under a corpus root.
pub const DIR: &str = "inputs";
const PROGRAM_EXT: &str = "toml";
const COVER_EXT: &str = "cover.json";

/// Where a kept program came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    /// Generated from its program seed.
    Fresh,
    /// A mutant of the input `parent`.
    Mutant { parent: String, mutation: Mutation },
}

/// `<hash>.cover.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cover {
    /// The points the program covered in the run that kept it (after minimisation, in the
    /// last accepted run).
    pub coverage: Coverage,
    pub origin: Origin,
    pub program_seed: u64,
    /// The cover kernel's bzImage whose vmlinux the PCs belong to (`ccwrig cover` on a
    /// corpus); `None` on a kernel without KCOV.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<PathBuf>,
    /// How long the run that kept it took (ms): what a mutant of it will cost, about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_ms: Option<u64>,
}

/// How a parent for mutation is chosen among the inputs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Parents {
    /// Every input as likely as any other.
    #[default]
    Uniform,
    /// In inverse proportion to its run time (AFL's preference for fast inputs): mutants of
    /// slow inputs (a remove that waits out an open fd, long sleeps) are slow themselves, and
    /// a few of them can halve a campaign's programs per minute.
    Cost,
}

/// Below this a program's time says little about its mutants' (the runner's fixed cost).
const COST_FLOOR_MS: u64 = 1000;

#[derive(Debug, Clone)]
pub struct Input {
    pub id: String,
    pub program: Scenario,
    pub cover: Cover,
}

/// What loading found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Loaded {
    /// Inputs read.
    pub read: usize,
    /// Of which redundant (their points covered by the others) and deleted.
    pub redundant: usize,
    /// Files that are not a valid program with its cover file: left alone and not used.
    pub unreadable: usize,
}

#[derive(Debug)]
pub struct Inputs {
    dir: PathBuf,
    entries: Vec<Input>,
    covered: Coverage,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FuzzError + '_ {
    move |source| FuzzError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The id of a program: the first 16 hex digits of the SHA-256 of its text.
pub fn id_of(program_toml: &str) -> String {
    let h = Sha256::digest(program_toml.as_bytes());
    hex::encode(&h[..8])
}

impl Inputs {
    /// Opens (creating) `root/inputs`, reads every input and re-minimises.
    pub fn open(root: &Path) -> Result<(Inputs, Loaded), FuzzError> {
        let dir = root.join(DIR);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let mut loaded = Loaded::default();
        let mut all = Vec::new();
        let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(io(&dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == PROGRAM_EXT))
            .collect();
        names.sort();
        for path in names {
            match read(&path) {
                Some(input) => all.push(input),
                None => {
                    tracing::warn!(
                        "{}: not a program with its cover file; not used",
                        path.display()
                    );
                    loaded.unreadable += 1;
                }
            }
        }
        loaded.read = all.len();
        all.sort_by(|a, b| {
            b.cover
                .coverage
                .len()
                .cmp(&a.cover.coverage.len())
                .then(shrink::size(&a.program).cmp(&shrink::size(&b.program)))
                .then(a.id.cmp(&b.id))
        });
        let mut inputs = Inputs {
            dir,
            entries: Vec::new(),
            covered: Coverage::new(),
        };
        for input in all {
            if inputs.covered.covers(&input.cover.coverage) {
                loaded.redundant += 1;
                inputs.remove_files(&input.id)?;
                continue;
            }
            inputs.covered.extend(&input.cover.coverage);
            inputs.entries.push(input);
        }
        Ok((inputs, loaded))
    }

    fn path(&self, id: &str, ext: &str) -> PathBuf {
        self.dir.join(format!("{id}.{ext}"))
    }

    fn remove_files(&self, id: &str) -> Result<(), FuzzError> {
        for ext in [PROGRAM_EXT, COVER_EXT] {
            let p = self.path(id, ext);
            match std::fs::remove_file(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&p)(e)),
                _ => {}
            }
        }
        Ok(())
    }

    /// Keeps `program` (with its seed in `race.seed`) as an input; returns its id.
    pub fn add(&mut self, program: &Scenario, cover: Cover) -> Result<String, FuzzError> {
        let text = program.to_toml();
        let id = id_of(&text);
        if self.entries.iter().any(|e| e.id == id) {
            return Ok(id);
        }
        let json = serde_json::to_string_pretty(&cover).map_err(|e| FuzzError::Corpus {
            path: self.dir.clone(),
            message: e.to_string(),
        })?;
        // The cover file last: an input without one is not read back.
        let prog = self.path(&id, PROGRAM_EXT);
        std::fs::write(&prog, &text).map_err(io(&prog))?;
        let cov = self.path(&id, COVER_EXT);
        std::fs::write(&cov, json + "\n").map_err(io(&cov))?;
        self.covered.extend(&cover.coverage);
        self.entries.push(Input {
            id: id.clone(),
            program: program.clone(),
            cover,
        });
        Ok(id)
    }

    /// Everything the inputs cover.
    pub fn covered(&self) -> &Coverage {
        &self.covered
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> &[Input] {
        &self.entries
    }

    /// The KCOV PCs of every input under `root/inputs` that ran on a cover kernel, as
    /// `ccwrig cover` reads them; read only (loading would re-minimise). The PCs are the
    /// campaign's scope (the driver's files), not all a program reached.
    pub fn kcov_of(root: &Path) -> Result<Vec<(PathBuf, ProgramCover)>, FuzzError> {
        let dir = root.join(DIR);
        if !dir.is_dir() {
            return Ok(vec![]);
        }
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(io(&dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.to_string_lossy().ends_with(&format!(".{COVER_EXT}")))
            .collect();
        paths.sort();
        let mut out = Vec::new();
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(io(&path))?;
            let cover: Cover = serde_json::from_str(&text).map_err(|e| FuzzError::Corpus {
                path: path.clone(),
                message: e.to_string(),
            })?;
            let Some(kernel) = cover.kernel else { continue };
            let pcs = cover
                .coverage
                .iter()
                .filter_map(|p| match p {
                    Point::Pc { pc } => Some(*pc),
                    _ => None,
                })
                .collect();
            out.push((path, ProgramCover::of_pcs(kernel, pcs)));
        }
        Ok(out)
    }

    /// A parent for mutation, chosen as `how` says. An input without a recorded run time
    /// (kept before they were recorded) weighs as the median of those with one.
    pub fn pick(&self, rng: &mut ChaCha8Rng, how: Parents) -> Option<&Input> {
        match how {
            Parents::Uniform => self.entries.choose(rng),
            Parents::Cost => {
                let mut known: Vec<u64> = self
                    .entries
                    .iter()
                    .filter_map(|e| e.cover.wall_ms)
                    .collect();
                known.sort_unstable();
                let median = known.get(known.len() / 2).copied().unwrap_or(COST_FLOOR_MS);
                self.entries
                    .choose_weighted(rng, |e| {
                        1.0 / e.cover.wall_ms.unwrap_or(median).max(COST_FLOOR_MS) as f64
                    })
                    .ok()
            }
        }
    }
}

/// An input and its cover file, or `None` when either is missing or does not parse.
fn read(program: &Path) -> Option<Input> {
    let id = program.file_stem()?.to_str()?.to_string();
    let cover = program.with_file_name(format!("{id}.{COVER_EXT}"));
    let cover: Cover = serde_json::from_str(&std::fs::read_to_string(cover).ok()?).ok()?;
    let program = crate::scenario::parse_file(program).ok()?;
    Some(Input { id, program, cover })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coverage::Point;
    use crate::fuzz::gen::Generator;

    fn cover(points: &[(u8, u8, u8)]) -> Cover {
        Cover {
            coverage: points
                .iter()
                .map(|&(state, event, next)| Point::Fsm { state, event, next })
                .collect(),
            origin: Origin::Fresh,
            program_seed: 1,
            kernel: None,
            wall_ms: None,
        }
    }

    /// Cost-aware choice picks a 1 s input about ten times as often as a 10 s one; an input
    /// without a recorded time weighs as the median; uniform choice ignores the times.
    #[test]
    fn cost_aware_parents_prefer_fast_inputs() {
        use rand::SeedableRng;
        let tmp = tempfile::tempdir().expect("tempdir");
        let g = Generator::default();
        let (mut inputs, _) = Inputs::open(tmp.path()).expect("open");
        for (i, ms) in [(1u8, Some(1000)), (2, Some(10_000)), (3, None)] {
            let c = Cover {
                wall_ms: ms,
                ..cover(&[(i, i, i)])
            };
            inputs
                .add(&g.generate(u64::from(i)).program, c)
                .expect("add");
        }
        let count = |how: Parents| {
            let mut rng = ChaCha8Rng::seed_from_u64(9);
            let mut n = std::collections::HashMap::new();
            for _ in 0..6000 {
                let p = inputs.pick(&mut rng, how).expect("an input");
                *n.entry(p.cover.wall_ms).or_insert(0u32) += 1;
            }
            n
        };
        let cost = count(Parents::Cost);
        let (fast, slow, unknown) = (cost[&Some(1000)], cost[&Some(10_000)], cost[&None]);
        assert!(fast > 7 * slow && fast < 13 * slow, "{cost:?}");
        // The median of 1 s and 10 s (the upper of the two) is 10 s.
        assert!(unknown > slow / 2 && unknown < slow * 2, "{cost:?}");
        let uniform = count(Parents::Uniform);
        assert!(
            uniform.values().all(|&n| n > 1700 && n < 2300),
            "{uniform:?}"
        );
    }

    #[test]
    fn the_pcs_of_inputs_from_a_cover_kernel_are_read_for_ccwrig_cover_and_nothing_is_deleted() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let g = Generator::default();
        let (mut inputs, _) = Inputs::open(tmp.path()).expect("open");
        let kcov = Cover {
            coverage: [Point::Pc { pc: 0x40 }, Point::Pc { pc: 0x10 }]
                .into_iter()
                .chain(cover(&[(1, 4, 2)]).coverage.iter().cloned())
                .collect(),
            kernel: Some(PathBuf::from("/k/bzImage")),
            ..cover(&[])
        };
        inputs.add(&g.generate(1).program, kcov).expect("add");
        // Without KCOV: no kernel, not a program of the line report.
        inputs
            .add(&g.generate(2).program, cover(&[(2, 5, 1)]))
            .expect("add");
        let read = Inputs::kcov_of(tmp.path()).expect("read");
        assert_eq!(read.len(), 1, "{read:?}");
        assert_eq!(read[0].1.kernel, PathBuf::from("/k/bzImage"));
        assert_eq!(read[0].1.pcs.as_slice(), &[0x10, 0x40]);
        let files = std::fs::read_dir(tmp.path().join(DIR))
            .expect("dir")
            .count();
        assert_eq!(files, 4);
        assert!(Inputs::kcov_of(&tmp.path().join("nothing"))
            .expect("none")
            .is_empty());
    }

    #[test]
    fn inputs_persist_and_reload_as_valid_programs() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let g = Generator::default();
        let (a, b) = (g.generate(1).program, g.generate(2).program);
        let (ia, ib) = {
            let (mut inputs, loaded) = Inputs::open(tmp.path()).expect("open");
            assert_eq!(loaded, Loaded::default());
            let ia = inputs.add(&a, cover(&[(1, 4, 2)])).expect("add");
            let mutant = Cover {
                origin: Origin::Mutant {
                    parent: ia.clone(),
                    mutation: Mutation::Insert,
                },
                ..cover(&[(2, 5, 1)])
            };
            let ib = inputs.add(&b, mutant).expect("add");
            (ia, ib)
        };
        assert!(tmp
            .path()
            .join("inputs")
            .join(format!("{ia}.toml"))
            .is_file());
        let (inputs, loaded) = Inputs::open(tmp.path()).expect("reopen");
        assert_eq!(
            (loaded.read, loaded.redundant, loaded.unreadable),
            (2, 0, 0)
        );
        assert_eq!(inputs.covered().len(), 2);
        let back = inputs
            .entries()
            .iter()
            .find(|e| e.id == ib)
            .expect("b reloaded");
        assert_eq!(back.program.actors, b.actors);
        assert!(matches!(back.cover.origin, Origin::Mutant { .. }));
    }

    /// Two machines' corpora copied into one directory: the union reloads, and inputs the
    /// others cover are dropped (files deleted), smaller programs winning ties.
    #[test]
    fn merged_directories_reminimise_on_load() {
        let (m1, m2, merged) = (
            tempfile::tempdir().expect("tempdir"),
            tempfile::tempdir().expect("tempdir"),
            tempfile::tempdir().expect("tempdir"),
        );
        let g = Generator::default();
        let progs: Vec<Scenario> = (10..14).map(|s| g.generate(s).program).collect();
        {
            let (mut i1, _) = Inputs::open(m1.path()).expect("open");
            i1.add(&progs[0], cover(&[(1, 4, 2), (2, 5, 1)]))
                .expect("add");
            i1.add(&progs[1], cover(&[(2, 1, 4)])).expect("add");
            let (mut i2, _) = Inputs::open(m2.path()).expect("open");
            // Covered by machine 1's first input: redundant once merged.
            i2.add(&progs[2], cover(&[(1, 4, 2)])).expect("add");
            i2.add(&progs[3], cover(&[(4, 2, 4), (2, 1, 4)]))
                .expect("add");
            // The same program on both machines is the same file.
            i2.add(&progs[0], cover(&[(1, 4, 2), (2, 5, 1)]))
                .expect("add");
        }
        let dest = merged.path().join(DIR);
        std::fs::create_dir_all(&dest).expect("mkdir");
        for src in [m1.path(), m2.path()] {
            for e in std::fs::read_dir(src.join(DIR)).expect("ls") {
                let p = e.expect("entry").path();
                std::fs::copy(&p, dest.join(p.file_name().expect("name"))).expect("copy");
            }
        }
        let (inputs, loaded) = Inputs::open(merged.path()).expect("open merged");
        assert_eq!(loaded.read, 4, "four distinct programs");
        // progs[1] (2,1,4) is covered by progs[3]; progs[2] by progs[0].
        assert_eq!(loaded.redundant, 2);
        assert_eq!(inputs.len(), 2);
        assert_eq!(inputs.covered().len(), 4);
        let files = std::fs::read_dir(&dest).expect("ls").count();
        assert_eq!(files, 4, "the redundant inputs' files are gone");
        let (again, loaded) = Inputs::open(merged.path()).expect("reopen");
        assert_eq!((loaded.read, loaded.redundant), (2, 0));
        assert_eq!(again.covered(), inputs.covered());
    }

    #[test]
    fn a_program_without_its_cover_file_is_not_used() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join(DIR);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let p = Generator::default().generate(3).program;
        std::fs::write(dir.join("0123.toml"), p.to_toml()).expect("write");
        let (inputs, loaded) = Inputs::open(tmp.path()).expect("open");
        assert_eq!((inputs.len(), loaded.unreadable), (0, 1));
        assert!(dir.join("0123.toml").is_file(), "left alone");
    }
}
