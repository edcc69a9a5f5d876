//! What the CI formats (KTAP, KCIDB) are made from: per scenario, its name and file, how its
//! run ended (a verdict, or an error that kept it from being judged) and what is known about
//! the kernel it ran on. The serialisers are pure functions of these structs.
//!
//! A verdict is read through its JSON form (`result.json`: `passed`, `known_finding`, and each
//! finding's `kind`, `title`, `detail`), the same whether it comes from a run that just ended
//! or from a run directory on disk.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::kernel::record::KernelRecord;

#[derive(Debug, thiserror::Error)]
pub enum OutcomeError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a ccwrig result: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("patch series {path}: {source}")]
    Patches {
        path: PathBuf,
        source: Box<crate::kernel::KernelError>,
    },
}

/// The oracles a verdict's findings come from: the subtests of a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Oracle {
    /// Kernel crash reports (and a crash the scenario expected that did not come).
    Crash,
    /// Step outcomes against the scenario's expectations.
    Steps,
    /// Operations still blocked, kernel threads stuck in D state.
    Hang,
    /// The guest still answering the agent.
    Guest,
    /// The vfio_ccw FSM trace: violations, final states, a complete trace.
    Fsm,
    /// Kernel log expectations.
    Dmesg,
    /// What the run left behind.
    Leaks,
    /// A finding kind this version does not know (kept, never dropped).
    Other,
}

impl Oracle {
    /// The oracles every judged scenario reports, in report order.
    pub const JUDGED: [Oracle; 7] = [
        Oracle::Crash,
        Oracle::Steps,
        Oracle::Hang,
        Oracle::Guest,
        Oracle::Fsm,
        Oracle::Dmesg,
        Oracle::Leaks,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Oracle::Crash => "crash",
            Oracle::Steps => "steps",
            Oracle::Hang => "hang",
            Oracle::Guest => "guest_alive",
            Oracle::Fsm => "fsm",
            Oracle::Dmesg => "dmesg",
            Oracle::Leaks => "leaks",
            Oracle::Other => "other",
        }
    }

    /// The oracle of a finding kind as the verdict serialises it (`fsm_violation`).
    pub fn of_kind(kind: &str) -> Oracle {
        match kind {
            "crash" | "missing_crash" => Oracle::Crash,
            "step" => Oracle::Steps,
            "hang" => Oracle::Hang,
            "guest_dead" => Oracle::Guest,
            "fsm_violation" | "fsm_final" | "trace_lost" => Oracle::Fsm,
            "dmesg" => Oracle::Dmesg,
            "leak" => Oracle::Leaks,
            _ => Oracle::Other,
        }
    }
}

/// One finding of a verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindingFacts {
    pub kind: String,
    pub title: String,
    pub detail: String,
    /// Equal for two findings of the same bug (other subchannel, other counts).
    pub key: String,
}

impl FindingFacts {
    /// A finding without the verdict's dedup key: its kind and title stand in for it.
    pub fn new(kind: &str, title: &str, detail: &str) -> FindingFacts {
        FindingFacts {
            kind: kind.to_string(),
            title: title.to_string(),
            detail: detail.to_string(),
            key: format!("{kind}: {title}"),
        }
    }

    /// The key the verdict computed when it made the finding (see `run::Subject::key`).
    pub fn with_key(mut self, key: &str) -> FindingFacts {
        self.key = key.to_string();
        self
    }

    pub fn oracle(&self) -> Oracle {
        Oracle::of_kind(&self.kind)
    }

    /// Whether the harness, not the kernel, is at fault: the trace was incomplete, so the run
    /// could not be judged.
    pub fn harness_side(&self) -> bool {
        self.kind == "trace_lost"
    }
}

/// How a scenario's run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The oracles judged it.
    Judged {
        passed: bool,
        /// The scenario's known kernel bug showed (the run passes as that known finding).
        known_finding: Option<String>,
        findings: Vec<FindingFacts>,
        seed: u64,
        boot_to_ready_ms: u64,
    },
    /// Nothing ran: the kernel could not be built (`build_failed`) or the scenario could not
    /// be set up.
    NotRun { error: String, build_failed: bool },
    /// The run started but the harness failed (the VM never reached the agent, a run
    /// directory could not be written).
    HarnessError { error: String },
}

/// The verdict fields read from `result.json` (other fields are ignored).
#[derive(Deserialize)]
struct VerdictJson {
    passed: bool,
    #[serde(default)]
    known_finding: Option<String>,
    #[serde(default)]
    findings: Vec<FindingJson>,
}

#[derive(Deserialize)]
struct FindingJson {
    kind: String,
    title: String,
    #[serde(default)]
    detail: String,
    /// The dedup key the verdict made with the finding (absent in result.json files written
    /// before findings were typed).
    #[serde(default)]
    key: Option<String>,
}

#[derive(Deserialize)]
struct ResultJson {
    scenario: String,
    seed: u64,
    #[serde(default)]
    boot_to_ready_ms: u64,
    #[serde(default)]
    wall_ms: u64,
    #[allow(dead_code)] // checked for shape; read as JSON by `Ending::judged`
    verdict: VerdictJson,
}

impl Ending {
    /// A judged ending from a verdict's JSON form.
    pub fn judged(
        verdict: &serde_json::Value,
        seed: u64,
        boot_to_ready_ms: u64,
    ) -> Result<Ending, serde_json::Error> {
        let v = VerdictJson::deserialize(verdict)?;
        Ok(Ending::Judged {
            passed: v.passed,
            known_finding: v.known_finding,
            findings: v
                .findings
                .iter()
                .map(|f| {
                    let facts = FindingFacts::new(&f.kind, &f.title, &f.detail);
                    match &f.key {
                        Some(k) => facts.with_key(k),
                        None => facts,
                    }
                })
                .collect(),
            seed,
            boot_to_ready_ms,
        })
    }
}

/// What is known about the kernel a scenario ran on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelFacts {
    pub release: Option<String>,
    pub profile: Option<String>,
    /// The build cache key (content address of every build input), or for a bzImage from
    /// elsewhere a hash of its path.
    pub build_key: String,
    /// The pinned source package or the tree.
    pub source: Option<String>,
    /// The tree's HEAD (`-dirty` appended when it had local changes).
    pub tree_head: Option<String>,
    pub tree_subject: Option<String>,
    /// The series as given on the command line (`--patches`).
    pub patches_from: Option<String>,
    pub tree: Option<String>,
    pub patches: Vec<String>,
    /// KCIDB's patchset hash: sha256 over the newline-terminated sha256 of each patch in
    /// order; empty without patches.
    pub patchset_hash: String,
    /// `CONFIG_CC_VERSION_TEXT` of the build's .config.
    pub compiler: Option<String>,
}

/// The patchset hash of KCIDB's checkout (`sha256sum *.patch | cut -c-64 | sha256sum`).
pub fn patchset_hash<'a>(patches: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut outer = Sha256::new();
    let mut any = false;
    for p in patches {
        any = true;
        outer.update(hex::encode(Sha256::digest(p)));
        outer.update(b"\n");
    }
    if any {
        hex::encode(outer.finalize())
    } else {
        String::new()
    }
}

/// `CONFIG_CC_VERSION_TEXT="..."` from a .config.
pub fn compiler_of_config(config: &str) -> Option<String> {
    config.lines().find_map(|l| {
        let v = l.strip_prefix("CONFIG_CC_VERSION_TEXT=")?;
        Some(v.trim().trim_matches('"').to_string())
    })
}

impl KernelFacts {
    /// From a run directory's kernel record; reads the build's .config and the patch series
    /// (for the patchset hash), which must still be where the build found them. A relative
    /// series path is taken from `base` (the directory ccwrig ran in).
    pub fn from_record(r: &KernelRecord, base: &Path) -> Result<KernelFacts, OutcomeError> {
        let patchset_hash = match &r.patches_from {
            Some(p) => {
                let path = base.join(p);
                let series = crate::kernel::patches::series(&path).map_err(|source| {
                    OutcomeError::Patches {
                        path,
                        source: Box::new(source),
                    }
                })?;
                patchset_hash(series.iter().map(|p| p.text.as_slice()))
            }
            None => String::new(),
        };
        let compiler = r
            .config
            .as_ref()
            .and_then(|c| std::fs::read_to_string(c).ok())
            .and_then(|c| compiler_of_config(&c));
        let build_key = r
            .key
            .clone()
            .unwrap_or_else(|| hex::encode(Sha256::digest(r.bzimage.to_string_lossy().as_bytes())));
        Ok(KernelFacts {
            release: r.release.clone(),
            profile: r.profile.map(|p| p.name().to_string()),
            build_key,
            source: r.source.clone(),
            tree_head: r.tree_head.clone(),
            tree_subject: r.tree_subject.clone(),
            patches_from: r.patches_from.as_ref().map(|p| p.display().to_string()),
            tree: r.tree.as_ref().map(|p| p.display().to_string()),
            patches: r.patches.clone(),
            patchset_hash,
            compiler,
        })
    }
}

/// One scenario, as the CI formats report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioOutcome {
    pub name: String,
    /// The scenario file as given.
    pub file: Option<String>,
    /// Where the run's artifacts are.
    pub run_dir: Option<String>,
    /// When the run started (RFC 3339).
    pub started: Option<String>,
    pub wall_ms: u64,
    pub kernel: Option<KernelFacts>,
    pub ending: Ending,
}

impl ScenarioOutcome {
    /// From a run directory: `result.json` (written when the run was judged) and
    /// `kernel.json` (written before booting). Without `result.json` the run was not judged.
    /// `base` is the directory ccwrig ran in (relative paths in the records start there).
    pub fn from_run_dir(dir: &Path, base: &Path) -> Result<ScenarioOutcome, OutcomeError> {
        let kernel = KernelRecord::read(dir)
            .map(|r| KernelFacts::from_record(&r, base))
            .transpose()?;
        let path = dir.join("result.json");
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let base = ScenarioOutcome {
            name,
            file: None,
            run_dir: Some(dir.display().to_string()),
            started: None,
            wall_ms: 0,
            kernel,
            ending: Ending::HarnessError {
                error: format!("{}: no result.json: the run was not judged", dir.display()),
            },
        };
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(base),
            Err(source) => return Err(OutcomeError::Io { path, source }),
        };
        let json: serde_json::Value =
            serde_json::from_slice(&text).map_err(|source| OutcomeError::Json {
                path: path.clone(),
                source,
            })?;
        let r = ResultJson::deserialize(&json).map_err(|source| OutcomeError::Json {
            path: path.clone(),
            source,
        })?;
        let verdict = json.get("verdict").cloned().unwrap_or_default();
        let ending = Ending::judged(&verdict, r.seed, r.boot_to_ready_ms)
            .map_err(|source| OutcomeError::Json { path, source })?;
        let file = dir.join("scenario.toml");
        Ok(ScenarioOutcome {
            name: r.scenario,
            file: file.is_file().then(|| file.display().to_string()),
            wall_ms: r.wall_ms,
            ending,
            ..base
        })
    }

    /// Whether the scenario counts as passed (ccwrig's own exit status).
    pub fn passed(&self) -> bool {
        matches!(self.ending, Ending::Judged { passed: true, .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/symbolize/6.12-seed-notoper-open-run")
    }

    #[test]
    fn patchset_hash_is_the_documented_shell_pipeline() {
        // printf 'a\n' > 1.patch; printf 'b\n' > 2.patch;
        // sha256sum *.patch | cut -c-64 | sha256sum | cut -c-64
        assert_eq!(
            patchset_hash([b"a\n".as_slice(), b"b\n".as_slice()]),
            "7b77b1b66500ed66bdb3e5f10e78f55ab6d4b404fa676ec1bee2ab5b31346a80"
        );
        assert_eq!(patchset_hash(std::iter::empty()), "");
    }

    #[test]
    fn compiler_comes_from_the_config() {
        let c = "CONFIG_FOO=y\nCONFIG_CC_VERSION_TEXT=\"s390x-linux-gnu-gcc (Debian 12.2.0-14) 12.2.0\"\n";
        assert_eq!(
            compiler_of_config(c).as_deref(),
            Some("s390x-linux-gnu-gcc (Debian 12.2.0-14) 12.2.0")
        );
        assert_eq!(compiler_of_config("CONFIG_FOO=y\n"), None);
    }

    #[test]
    fn finding_kinds_map_to_oracles_and_keys_strip_incidentals() {
        for (kind, oracle) in [
            ("crash", Oracle::Crash),
            ("missing_crash", Oracle::Crash),
            ("step", Oracle::Steps),
            ("hang", Oracle::Hang),
            ("guest_dead", Oracle::Guest),
            ("fsm_violation", Oracle::Fsm),
            ("fsm_final", Oracle::Fsm),
            ("trace_lost", Oracle::Fsm),
            ("dmesg", Oracle::Dmesg),
            ("leak", Oracle::Leaks),
            ("something_new", Oracle::Other),
        ] {
            assert_eq!(Oracle::of_kind(kind), oracle, "{kind}");
        }
        // The verdict's own key wins: two leaks on two subchannels are one issue.
        let verdict = serde_json::json!({"passed": false, "findings": [
            {"kind": "leak", "title": "leak: 0.0.0000 available_instances 1 -> 0",
             "key": "leak: SCHID available_instances N -> N"},
            {"kind": "leak", "title": "leak: 0.0.0001 available_instances 2 -> 1",
             "key": "leak: SCHID available_instances N -> N"},
            {"kind": "dmesg", "title": "kernel log lacks \"x\""}
        ]});
        let Ending::Judged { findings, .. } = Ending::judged(&verdict, 1, 1).unwrap() else {
            panic!("judged")
        };
        assert_eq!(findings[0].key, findings[1].key);
        assert_eq!(findings[2].key, "dmesg: kernel log lacks \"x\"");
    }

    #[test]
    fn a_recorded_run_directory_reads_back() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let o = ScenarioOutcome::from_run_dir(&fixture(), &repo).unwrap();
        assert_eq!(o.name, "unplug_request_reset");
        assert!(!o.passed());
        let Ending::Judged {
            findings,
            seed,
            known_finding,
            ..
        } = &o.ending
        else {
            panic!("{:?}", o.ending)
        };
        assert_eq!(*seed, 1692444545977850787);
        assert_eq!(*known_finding, None);
        assert_eq!(findings.len(), 9);
        assert_eq!(
            findings[0].title,
            "illegal operation in vfio_ccw_mdev_ioctl"
        );
        assert_eq!(findings[0].oracle(), Oracle::Crash);
        assert_eq!(findings[0].key, findings[1].key, "two oopses, one bug");
        let k = o.kernel.as_ref().unwrap();
        assert_eq!(k.release.as_deref(), Some("6.12.117"));
        assert_eq!(k.profile.as_deref(), Some("fast"));
        assert_eq!(
            k.patches,
            ["0001-vfio-ccw-fsm-drop-NOT_OPER-OPEN-entry.patch"]
        );
        // kernel/patches/seed-notoper-open: sha256sum *.patch | cut -c-64 | sha256sum
        assert_eq!(
            k.patchset_hash,
            "181bfcd39665d465e04b91d20c2eb2567bee0f4369e9f5a7d66e7286e6ee9674"
        );
        let e = ScenarioOutcome::from_run_dir(&fixture(), Path::new("/nonexistent")).unwrap_err();
        assert!(e.to_string().contains("seed-notoper-open"), "{e}");
    }
}
