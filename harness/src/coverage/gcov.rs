//! GCOV counters of vfio-ccw's objects (a cover kernel, `kernel::gcov`): parsed from the
//! `.gcda` files the kernel renders in debugfs, kept per program, summed over a campaign,
//! and turned into points (an arc counter that moved) and, with the `.gcno` notes the build
//! kept and the cross `gcov` tool, into executed source lines.
//!
//! The kernel writes a `.gcda` as GCC's runtime would (kernel/gcov/gcc_4_7.c): 32-bit words
//! in its own byte order, a header (magic, version, stamp, and from GCC 12 on a zero
//! checksum), then per function a function record (ident, two checksums) followed by one
//! record per active counter kind, each value as its low then high word. Record lengths are
//! in bytes from GCC 12 on and in words before. Only the first kind, arcs, is used.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

use super::Point;
use crate::kernel::gcov::OBJECTS;

const MAGIC: u32 = 0x6763_6461; // "gcda"
const TAG_FUNCTION: u32 = 0x0100_0000;
/// `GCOV_TAG_FOR_COUNTER(0)`: the arc counters.
const TAG_ARCS: u32 = 0x01a1_0000;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GcdaError {
    #[error("{path}: not a gcda file (bad magic)")]
    Magic { path: String },
    #[error("{path}: cut short at byte {at}")]
    Short { path: String, at: usize },
    #[error("{path}: a counter record before any function record, at byte {at}")]
    Orphan { path: String, at: usize },
    #[error("{path}: not hex")]
    Hex { path: String },
}

/// One object's counters, with what is needed to write them back as its `.gcda`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectCounts {
    pub big_endian: bool,
    pub version: u32,
    pub stamp: u32,
    /// The GCC 12 header word (None before GCC 12).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<u32>,
    /// Bytes per unit of a record length: 4 from GCC 12 on, 1 before.
    pub unit: u32,
    pub functions: Vec<FunctionCounts>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionCounts {
    pub ident: u32,
    pub lineno_checksum: u32,
    pub cfg_checksum: u32,
    pub arcs: Vec<u64>,
}

/// Every profiled object's counters (keyed by object path, e.g.
/// `drivers/s390/cio/vfio_ccw_fsm.o`): a program's or a sum of programs'.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GcovCounts {
    pub objects: BTreeMap<String, ObjectCounts>,
}

struct Reader<'a> {
    path: &'a str,
    b: &'a [u8],
    at: usize,
    big: bool,
}

impl Reader<'_> {
    fn u32(&mut self) -> Result<u32, GcdaError> {
        let Some(w) = self.b.get(self.at..self.at + 4) else {
            return Err(GcdaError::Short {
                path: self.path.into(),
                at: self.at,
            });
        };
        self.at += 4;
        let w = [w[0], w[1], w[2], w[3]];
        Ok(if self.big {
            u32::from_be_bytes(w)
        } else {
            u32::from_le_bytes(w)
        })
    }

    fn u64(&mut self) -> Result<u64, GcdaError> {
        let lo = self.u32()? as u64;
        let hi = self.u32()? as u64;
        Ok(lo | hi << 32)
    }

    fn done(&self) -> bool {
        self.at >= self.b.len()
    }
}

/// Parses one `.gcda` (`path` only names it in errors).
pub fn parse(path: &str, bytes: &[u8]) -> Result<ObjectCounts, GcdaError> {
    let magic = bytes
        .get(..4)
        .ok_or(GcdaError::Magic { path: path.into() })?;
    let big = match magic {
        [0x67, 0x63, 0x64, 0x61] => true,
        [0x61, 0x64, 0x63, 0x67] => false,
        _ => return Err(GcdaError::Magic { path: path.into() }),
    };
    let mut r = Reader {
        path,
        b: bytes,
        at: 4,
        big,
    };
    let version = r.u32()?;
    let stamp = r.u32()?;
    let mut functions: Vec<FunctionCounts> = Vec::new();
    let mut checksum = None;
    let mut unit = None;
    let mut first = true;
    while !r.done() {
        let at = r.at;
        let tag = r.u32()?;
        if first && tag != TAG_FUNCTION {
            // GCC 12's checksum word (the kernel writes 0) sits between stamp and records.
            checksum = Some(tag);
            first = false;
            continue;
        }
        first = false;
        let length = r.u32()?;
        if tag == TAG_FUNCTION {
            // Three words: the length says its unit.
            let u = *unit.get_or_insert(if length == 12 { 4 } else { 1 });
            let words = length / u;
            let ident = r.u32()?;
            let lineno_checksum = r.u32()?;
            let cfg_checksum = r.u32()?;
            for _ in 3..words {
                r.u32()?;
            }
            functions.push(FunctionCounts {
                ident,
                lineno_checksum,
                cfg_checksum,
                arcs: Vec::new(),
            });
            continue;
        }
        let u = unit.unwrap_or(4);
        let words = (length / u) as usize;
        if tag & 0xff00_0000 == 0x0100_0000 && tag & 0x00ff_0000 != 0 {
            let Some(f) = functions.last_mut() else {
                return Err(GcdaError::Orphan {
                    path: path.into(),
                    at,
                });
            };
            if tag == TAG_ARCS {
                for _ in 0..words / 2 {
                    f.arcs.push(r.u64()?);
                }
                continue;
            }
        }
        for _ in 0..words {
            r.u32()?;
        }
    }
    Ok(ObjectCounts {
        big_endian: big,
        version,
        stamp,
        checksum,
        unit: unit.unwrap_or(4),
        functions,
    })
}

/// The bytes of a hex string as the agent sends them.
pub fn unhex(path: &str, hex: &str) -> Result<Vec<u8>, GcdaError> {
    let bad = || GcdaError::Hex { path: path.into() };
    if !hex.len().is_multiple_of(2) {
        return Err(bad());
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(bad)
        })
        .collect()
}

impl ObjectCounts {
    /// The `.gcda` bytes, as the kernel would write these counters.
    pub fn to_gcda(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = |v: u32| {
            out.extend_from_slice(&if self.big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            })
        };
        w(MAGIC);
        w(self.version);
        w(self.stamp);
        if let Some(c) = self.checksum {
            w(c);
        }
        for f in &self.functions {
            w(TAG_FUNCTION);
            w(3 * self.unit);
            w(f.ident);
            w(f.lineno_checksum);
            w(f.cfg_checksum);
            w(TAG_ARCS);
            w(f.arcs.len() as u32 * 2 * self.unit);
            for &a in &f.arcs {
                w(a as u32);
                w((a >> 32) as u32);
            }
        }
        out
    }

    /// Adds `other`'s counts, function by function; a function whose ident or checksums
    /// differ (another build of the object) is left as it was. Whether a counter moved from 0.
    fn add(&mut self, other: &ObjectCounts) -> bool {
        let mut new = false;
        for (mine, theirs) in self.functions.iter_mut().zip(&other.functions) {
            if (mine.ident, mine.lineno_checksum, mine.cfg_checksum)
                != (theirs.ident, theirs.lineno_checksum, theirs.cfg_checksum)
                || mine.arcs.len() != theirs.arcs.len()
            {
                continue;
            }
            for (a, b) in mine.arcs.iter_mut().zip(&theirs.arcs) {
                new |= *a == 0 && *b > 0;
                *a = a.saturating_add(*b);
            }
        }
        new
    }
}

impl GcovCounts {
    /// The profiled objects among the agent's files; others (and files of objects ccwrig
    /// does not profile) are skipped.
    pub fn from_files(files: &[ccwrig_proto::data::GcdaFile]) -> Result<GcovCounts, GcdaError> {
        let mut objects = BTreeMap::new();
        for f in files {
            let Some(object) = crate::kernel::gcov::object_of(&f.path) else {
                continue;
            };
            let bytes = unhex(&f.path, &f.hex)?;
            objects.insert(object.to_string(), parse(&f.path, &bytes)?);
        }
        Ok(GcovCounts { objects })
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Sums `other` into `self`; whether that reached anything `self` had not (a counter
    /// moved from 0, or an object it lacked): only then can the executed lines change.
    pub fn merge(&mut self, other: &GcovCounts) -> bool {
        let mut new = false;
        for (name, o) in &other.objects {
            match self.objects.get_mut(name) {
                Some(mine) => new |= mine.add(o),
                None => {
                    self.objects.insert(name.clone(), o.clone());
                    new = true;
                }
            }
        }
        new
    }

    /// One point per arc counter that moved.
    pub fn points(&self) -> impl Iterator<Item = Point> + '_ {
        self.objects.iter().flat_map(|(name, o)| {
            let object = OBJECTS.iter().position(|x| x == name).unwrap_or(usize::MAX) as u8;
            o.functions.iter().flat_map(move |f| {
                f.arcs
                    .iter()
                    .enumerate()
                    .filter(|(_, &c)| c > 0)
                    .map(move |(i, _)| Point::Arc {
                        object,
                        function: f.ident,
                        arc: i as u32,
                    })
            })
        })
    }
}

/// Executed and executable lines of one source file, as `gcov` counts them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FileLines {
    pub executed: BTreeSet<u32>,
    pub total: BTreeSet<u32>,
    /// Per function: its executable lines in this file.
    pub functions: BTreeMap<String, BTreeSet<u32>>,
}

impl FileLines {
    /// (executed, executable) lines of `lines` (a function's, or the file's).
    pub fn counts_of(&self, lines: &BTreeSet<u32>) -> (usize, usize) {
        (
            lines.iter().filter(|l| self.executed.contains(l)).count(),
            lines.len(),
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GcovToolError {
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("running {tool}: {source} (it comes with the s390x cross compiler)")]
    Spawn {
        tool: String,
        source: std::io::Error,
    },
    #[error("{tool} failed on {object}: {stderr}")]
    Failed {
        tool: String,
        object: String,
        stderr: String,
    },
    #[error("{tool}'s JSON for {object}: {message}")]
    Json {
        tool: String,
        object: String,
        message: String,
    },
}

/// The cross `gcov`, which reads the kernel's byte order and notes.
pub const TOOL: &str = "s390x-linux-gnu-gcov";

/// The lines of the objects' own `.c` files (keyed `drivers/s390/cio/vfio_ccw_fsm.c`) that
/// `counts` executed, by `gcov --json-format` on the notes kept in the kernel's cache entry
/// (`entry`). Headers' inline code is left out, as in the KCOV line counts.
pub fn lines(
    entry: &Path,
    counts: &GcovCounts,
) -> Result<BTreeMap<String, FileLines>, GcovToolError> {
    let tmp = tempfile::tempdir().map_err(|source| GcovToolError::Io {
        path: std::env::temp_dir(),
        source,
    })?;
    let mut out = BTreeMap::new();
    for (object, c) in &counts.objects {
        let notes = crate::kernel::gcov::notes_path(entry, object);
        let stem = object.strip_suffix(".o").unwrap_or(object);
        let base = stem.rsplit('/').next().unwrap_or(stem);
        let gcno = tmp.path().join(format!("{base}.gcno"));
        let gcda = tmp.path().join(format!("{base}.gcda"));
        std::fs::copy(&notes, &gcno).map_err(|source| GcovToolError::Io {
            path: notes.clone(),
            source,
        })?;
        std::fs::write(&gcda, c.to_gcda()).map_err(|source| GcovToolError::Io {
            path: gcda.clone(),
            source,
        })?;
        let o = Command::new(TOOL)
            .current_dir(tmp.path())
            .args(["--json-format", "--stdout", "-o"])
            .arg(tmp.path())
            .arg(format!("{base}.c"))
            .output()
            .map_err(|source| GcovToolError::Spawn {
                tool: TOOL.into(),
                source,
            })?;
        if !o.status.success() {
            return Err(GcovToolError::Failed {
                tool: TOOL.into(),
                object: object.clone(),
                stderr: String::from_utf8_lossy(&o.stderr).trim().to_string(),
            });
        }
        let source = format!("{stem}.c");
        let file_lines =
            json_lines(&o.stdout, &format!("{base}.c")).map_err(|message| GcovToolError::Json {
                tool: TOOL.into(),
                object: object.clone(),
                message,
            })?;
        out.insert(source, file_lines);
    }
    Ok(out)
}

/// Executed and executable lines of the profiled files together, as [`lines`] counts them;
/// `None` (logged) when `gcov` failed.
pub fn executed_of_total(entry: &Path, counts: &GcovCounts) -> Option<(u64, u64)> {
    match lines(entry, counts) {
        Ok(files) => Some(files.values().fold((0, 0), |(e, t), f| {
            (e + f.executed.len() as u64, t + f.total.len() as u64)
        })),
        Err(e) => {
            tracing::warn!("gcov lines: {e}");
            None
        }
    }
}

/// The lines of the file whose name ends in `file` in `gcov --json-format --stdout` output
/// (one JSON document per line).
fn json_lines(stdout: &[u8], file: &str) -> Result<FileLines, String> {
    #[derive(Deserialize)]
    struct Doc {
        files: Vec<File>,
    }
    #[derive(Deserialize)]
    struct File {
        file: String,
        lines: Vec<Line>,
    }
    #[derive(Deserialize)]
    struct Line {
        line_number: u32,
        count: u64,
        #[serde(default)]
        function_name: Option<String>,
    }
    let mut fl = FileLines::default();
    let mut found = false;
    for line in stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let doc: Doc = serde_json::from_slice(line).map_err(|e| e.to_string())?;
        for f in doc.files {
            if f.file == file || f.file.ends_with(&format!("/{file}")) {
                found = true;
                for l in f.lines {
                    fl.total.insert(l.line_number);
                    if l.count > 0 {
                        fl.executed.insert(l.line_number);
                    }
                    if let Some(func) = l.function_name {
                        fl.functions.entry(func).or_default().insert(l.line_number);
                    }
                }
            }
        }
    }
    if !found {
        return Err(format!("no entry for {file}"));
    }
    Ok(fl)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GCC 12 gcda in s390's byte order: two functions, 3 and 2 arcs.
    fn sample() -> ObjectCounts {
        ObjectCounts {
            big_endian: true,
            version: 0x4232_332a,
            stamp: 0x1234_5678,
            checksum: Some(0),
            unit: 4,
            functions: vec![
                FunctionCounts {
                    ident: 7,
                    lineno_checksum: 1,
                    cfg_checksum: 2,
                    arcs: vec![0, 5, 1 << 40],
                },
                FunctionCounts {
                    ident: 9,
                    lineno_checksum: 3,
                    cfg_checksum: 4,
                    arcs: vec![2, 0],
                },
            ],
        }
    }

    #[test]
    fn a_gcda_round_trips_and_reads_its_words_big_endian() {
        let s = sample();
        let bytes = s.to_gcda();
        assert_eq!(&bytes[..4], b"gcda");
        assert_eq!(parse("x.gcda", &bytes).unwrap(), s);
        // Without the GCC 12 checksum and with word lengths (older compilers).
        let mut old = s.clone();
        old.checksum = None;
        old.unit = 1;
        assert_eq!(parse("x.gcda", &old.to_gcda()).unwrap(), old);
    }

    #[test]
    fn bad_input_is_named() {
        assert_eq!(
            parse("a.gcda", b"nope").unwrap_err(),
            GcdaError::Magic {
                path: "a.gcda".into()
            }
        );
        let bytes = sample().to_gcda();
        assert!(matches!(
            parse("b.gcda", &bytes[..bytes.len() - 3]),
            Err(GcdaError::Short { .. })
        ));
        assert!(matches!(unhex("c", "0g"), Err(GcdaError::Hex { .. })));
    }

    #[test]
    fn points_are_the_moved_arcs_and_merging_sums() {
        let mut c = GcovCounts::default();
        c.objects
            .insert("drivers/s390/cio/vfio_ccw_fsm.o".into(), sample());
        let pts: Vec<Point> = c.points().collect();
        let fsm = OBJECTS
            .iter()
            .position(|o| *o == "drivers/s390/cio/vfio_ccw_fsm.o")
            .unwrap() as u8;
        assert_eq!(
            pts,
            vec![
                Point::Arc {
                    object: fsm,
                    function: 7,
                    arc: 1
                },
                Point::Arc {
                    object: fsm,
                    function: 7,
                    arc: 2
                },
                Point::Arc {
                    object: fsm,
                    function: 9,
                    arc: 0
                },
            ]
        );
        let mut total = c.clone();
        assert!(!total.merge(&c), "the same arcs again reach nothing new");
        assert_eq!(
            total.objects["drivers/s390/cio/vfio_ccw_fsm.o"].functions[0].arcs,
            vec![0, 10, 2 << 40]
        );
        // Another build's function is not summed into ours.
        let mut other = c.clone();
        other
            .objects
            .get_mut("drivers/s390/cio/vfio_ccw_fsm.o")
            .unwrap()
            .functions[1]
            .cfg_checksum = 99;
        let mut t = c.clone();
        assert!(!t.merge(&other));
        let mut fresh = GcovCounts::default();
        assert!(fresh.merge(&c), "a first object is new");
        assert_eq!(
            t.objects["drivers/s390/cio/vfio_ccw_fsm.o"].functions[1].arcs,
            vec![2, 0]
        );
    }

    #[test]
    fn the_tools_json_gives_executed_and_executable_lines() {
        let out = br#"{"format_version":"1","files":[{"file":"/src/drivers/s390/cio/vfio_ccw_fsm.c","lines":[{"line_number":10,"count":0,"function_name":"fsm_irq"},{"line_number":11,"count":3,"function_name":"fsm_irq"},{"line_number":20,"count":0,"function_name":"fsm_nop"}]},{"file":"x.h","lines":[{"line_number":1,"count":1}]}]}"#;
        let fl = json_lines(out, "vfio_ccw_fsm.c").unwrap();
        assert_eq!(fl.total, [10, 11, 20].into());
        assert_eq!(fl.executed, [11].into());
        assert_eq!(fl.counts_of(&fl.functions["fsm_irq"]), (1, 2));
        assert_eq!(fl.counts_of(&fl.total), (1, 3));
        assert!(json_lines(out, "vfio_ccw_cp.c").is_err());
    }
}
