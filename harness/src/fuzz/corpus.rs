//! The findings directory: one `crashes/<slug>/` per distinct finding key, holding the first
//! console log, the program that first hit it (`program.toml`), `meta.json` (title, kind, hit
//! count, first/last seen), and once triaged `repro.toml` with its reproduction rates.
//!
//! A corpus directory outlives runs: what it holds when a run starts is known, and only keys
//! not seen before count as new (the nightly job fails on those).

use crate::rundir::{finding_dir, Artifact};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::interest::{slug, Hit, Kind};
use super::FuzzError;

/// How often a program reproduced a finding: `hits` of `tries`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rate {
    pub hits: u32,
    pub tries: u32,
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.hits, self.tries)
    }
}

/// What triage (reproduction and shrinking) established.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Triage {
    /// The first program re-run as it was.
    pub original: Rate,
    /// `repro.toml` re-run with its recorded seed, as `ccwrig run` does.
    pub repro: Option<Rate>,
    pub original_size: usize,
    pub repro_size: Option<usize>,
    pub shrink_tests: usize,
    pub shrink_ms: u64,
    /// When the program alone did not reproduce: what replaying the VM's history did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<HistoryTriage>,
}

/// The replay of a finding's history (the programs its VM ran since boot) in fresh VMs, and
/// of that history shrunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryTriage {
    /// Programs in the recorded history (the hit's own last).
    pub programs: usize,
    pub rate: Rate,
    /// Programs left after shrinking, and how often that sequence reproduced.
    pub repro_programs: Option<usize>,
    pub repro: Option<Rate>,
    /// Operations in the shrunk sequence (all its programs).
    pub repro_size: Option<usize>,
    pub shrink_tests: usize,
    pub shrink_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub key: String,
    pub kind: Kind,
    pub title: String,
    pub hits: u64,
    /// RFC 3339, UTC.
    pub first_seen: String,
    pub last_seen: String,
    /// The seed of the program that first hit it and the campaign seed that generated it.
    pub program_seed: u64,
    pub campaign_seed: u64,
    pub triage: Option<Triage>,
}

/// Whether a recorded hit was the first of its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// First hit ever: the caller should triage it.
    New(PathBuf),
    /// Seen before (in this run or an earlier one): counted.
    Again { hits: u64, triaged: bool },
}

#[derive(Debug)]
pub struct Corpus {
    root: PathBuf,
    entries: BTreeMap<String, Meta>,
    /// Keys present when the corpus was opened.
    known_at_start: Vec<String>,
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FuzzError + '_ {
    move |source| FuzzError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write(path: &Path, data: impl AsRef<[u8]>) -> Result<(), FuzzError> {
    std::fs::write(path, data).map_err(io(path))
}

impl Corpus {
    /// Opens (creating) `root`, reading every `crashes/*/meta.json` already there.
    pub fn open(root: &Path) -> Result<Corpus, FuzzError> {
        let crashes = root.join("crashes");
        std::fs::create_dir_all(&crashes).map_err(io(&crashes))?;
        let mut entries = BTreeMap::new();
        for e in std::fs::read_dir(&crashes)
            .map_err(io(&crashes))?
            .filter_map(Result::ok)
        {
            let meta = e.path().join(finding_dir::META);
            let Ok(text) = std::fs::read_to_string(&meta) else {
                continue;
            };
            let m: Meta = serde_json::from_str(&text).map_err(|e| FuzzError::Corpus {
                path: meta.clone(),
                message: e.to_string(),
            })?;
            entries.insert(m.key.clone(), m);
        }
        let known_at_start = entries.keys().cloned().collect();
        Ok(Corpus {
            root: root.to_path_buf(),
            entries,
            known_at_start,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of a key (whether or not it exists yet).
    pub fn dir_of(&self, key: &str) -> PathBuf {
        self.root.join("crashes").join(slug(key))
    }

    /// Counts one hit; on the first, stores the program and its console log.
    pub fn record(
        &mut self,
        hit: &Hit,
        program_toml: &str,
        console: &str,
        program_seed: u64,
        campaign_seed: u64,
    ) -> Result<Recorded, FuzzError> {
        let dir = self.dir_of(&hit.key);
        if let Some(m) = self.entries.get_mut(&hit.key) {
            m.hits += 1;
            m.last_seen = now();
            let (hits, triaged) = (m.hits, m.triage.is_some());
            let m = m.clone();
            self.save(&m)?;
            return Ok(Recorded::Again { hits, triaged });
        }
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        write(&dir.join(finding_dir::PROGRAM), program_toml)?;
        write(&dir.join(Artifact::Console.file_name()), console)?;
        write(
            &dir.join("finding.txt"),
            format!("{}\n\n{}\n", hit.title, hit.detail),
        )?;
        let t = now();
        let m = Meta {
            key: hit.key.clone(),
            kind: hit.kind,
            title: hit.title.clone(),
            hits: 1,
            first_seen: t.clone(),
            last_seen: t,
            program_seed,
            campaign_seed,
            triage: None,
        };
        self.save(&m)?;
        self.entries.insert(hit.key.clone(), m);
        Ok(Recorded::New(dir))
    }

    /// Stores triage results and, when there is one, the shrunk program.
    pub fn set_triage(
        &mut self,
        key: &str,
        triage: Triage,
        repro_toml: Option<&str>,
    ) -> Result<(), FuzzError> {
        let dir = self.dir_of(key);
        if let Some(t) = repro_toml {
            write(&dir.join(finding_dir::REPRO), t)?;
        }
        let Some(m) = self.entries.get_mut(key) else {
            return Ok(());
        };
        m.triage = Some(triage);
        let m = m.clone();
        self.save(&m)
    }

    fn save(&self, m: &Meta) -> Result<(), FuzzError> {
        let dir = self.dir_of(&m.key);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let text = serde_json::to_string_pretty(m).map_err(|e| FuzzError::Corpus {
            path: dir.clone(),
            message: e.to_string(),
        })?;
        write(&dir.join(finding_dir::META), text + "\n")
    }

    pub fn entries(&self) -> impl Iterator<Item = &Meta> {
        self.entries.values()
    }

    pub fn is_new(&self, key: &str) -> bool {
        !self.known_at_start.iter().any(|k| k == key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(key: &str) -> Hit {
        Hit {
            kind: Kind::Crash,
            title: format!("{key} title"),
            key: key.into(),
            detail: "d".into(),
        }
    }

    #[test]
    fn repeated_hits_fold_into_one_entry() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut c = Corpus::open(tmp.path()).expect("open");
        let table: &[(&str, Recorded)] = &[
            (
                "crash: Oops in f",
                Recorded::New(c.dir_of("crash: Oops in f")),
            ),
            (
                "crash: Oops in f",
                Recorded::Again {
                    hits: 2,
                    triaged: false,
                },
            ),
            ("fsm: x", Recorded::New(c.dir_of("fsm: x"))),
            (
                "crash: Oops in f",
                Recorded::Again {
                    hits: 3,
                    triaged: false,
                },
            ),
        ];
        for (key, want) in table {
            let got = c
                .record(&hit(key), "program", "console", 1, 2)
                .expect("record");
            assert_eq!(&got, want, "{key}");
        }
        assert_eq!(c.entries().count(), 2);
        let dir = c.dir_of("crash: Oops in f");
        assert!(dir.join("program.toml").is_file() && dir.join("console.log").is_file());
        let meta: Meta =
            serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).expect("meta"))
                .expect("json");
        assert_eq!(meta.hits, 3);
    }

    #[test]
    fn reopened_corpus_knows_its_findings() {
        let tmp = tempfile::tempdir().expect("tempdir");
        {
            let mut c = Corpus::open(tmp.path()).expect("open");
            c.record(&hit("crash: a"), "p", "c", 1, 2).expect("record");
            let t = Triage {
                original: Rate { hits: 3, tries: 3 },
                repro: Some(Rate { hits: 9, tries: 10 }),
                original_size: 12,
                repro_size: Some(4),
                shrink_tests: 20,
                shrink_ms: 1000,
                history: None,
            };
            c.set_triage("crash: a", t, Some("repro")).expect("triage");
        }
        let mut c = Corpus::open(tmp.path()).expect("reopen");
        assert!(!c.is_new("crash: a"));
        assert!(c.is_new("crash: b"));
        assert_eq!(
            c.record(&hit("crash: a"), "p", "c", 1, 2).expect("record"),
            Recorded::Again {
                hits: 2,
                triaged: true
            }
        );
        assert!(c.dir_of("crash: a").join("repro.toml").is_file());
    }
}
