//! Line coverage of a set of programs on one cover kernel: which instrumented lines of the
//! files that matter (vfio-ccw, cio, vfio) some program reached, per file and per function.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::kcov::ProgramCover;
use super::sites::{self, CALL_LEN};
use super::CoverError;
use crate::rundir::Artifact;

/// The source trees the report is about unless told otherwise.
pub const DEFAULT_PREFIXES: &[&str] = &["drivers/s390/cio/", "drivers/vfio/"];
/// vfio-ccw's own sources, the files the fuzzer's line count is about.
pub const VFIO_CCW_PREFIX: &str = "drivers/s390/cio/vfio_ccw_";

/// One instrumented line: covered or not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileCover {
    /// Instrumented lines, and whether a program reached each.
    pub lines: BTreeMap<u32, bool>,
    /// Per function (the ELF symbol the call sites are in): its instrumented lines in this
    /// file.
    pub functions: BTreeMap<String, BTreeSet<u32>>,
}

impl FileCover {
    /// (covered, instrumented) lines.
    pub fn counts(&self) -> (usize, usize) {
        (
            self.lines.values().filter(|c| **c).count(),
            self.lines.len(),
        )
    }

    /// (covered, instrumented) lines of one function.
    pub fn function_counts(&self, lines: &BTreeSet<u32>) -> (usize, usize) {
        let covered = lines
            .iter()
            .filter(|l| self.lines.get(l) == Some(&true))
            .count();
        (covered, lines.len())
    }
}

#[derive(Debug, Clone)]
pub struct Report {
    pub kernel: PathBuf,
    pub release: Option<String>,
    /// Where the source text comes from (the tree the kernel was built from).
    pub src: Option<PathBuf>,
    pub prefixes: Vec<String>,
    /// coverage.json files read.
    pub programs: usize,
    /// Steps traced, and of those the ones whose trace buffer filled.
    pub traced: usize,
    pub full: usize,
    /// Distinct PCs over all programs, and those in the report's files.
    pub pcs: usize,
    pub pcs_in_files: usize,
    /// PCs that follow no call of the tracer: the tracer was reached by a tail call (`jg`) from
    /// a small function, so KCOV saw its caller's return address. Placed on the line of the
    /// call before them when that line is instrumented; this many could not be placed. Most
    /// PCs unplaced means the wrong vmlinux.
    pub pcs_unplaced: usize,
    pub files: BTreeMap<String, FileCover>,
    /// GCOV's lines of vfio-ccw's profiled files (a kernel with GCOV), keyed like `files`:
    /// executed in any context, interrupts, kworkers and boot included.
    pub gcov: BTreeMap<String, super::gcov::FileLines>,
}

/// Every `coverage.json` at or below `paths` (a run directory, a fuzz corpus or campaign).
pub fn collect(paths: &[PathBuf]) -> Result<Vec<(PathBuf, ProgramCover)>, CoverError> {
    let name = Artifact::Coverage.file_name();
    let mut found = Vec::new();
    let mut stack: Vec<PathBuf> = paths.to_vec();
    while let Some(p) = stack.pop() {
        if p.is_file() && p.file_name().is_some_and(|n| n == name) {
            found.push(p);
            continue;
        }
        if !p.is_dir() {
            continue;
        }
        let entries = std::fs::read_dir(&p).map_err(|source| CoverError::Read {
            path: p.clone(),
            source,
        })?;
        for e in entries.flatten() {
            stack.push(e.path());
        }
    }
    found.sort();
    found
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).map_err(|source| CoverError::Read {
                path: path.clone(),
                source,
            })?;
            let c = serde_json::from_str(&text).map_err(|source| CoverError::Json {
                path: path.clone(),
                source,
            })?;
            Ok((path, c))
        })
        .collect()
}

/// The report of `programs`, which must all have run on one kernel.
pub fn build(
    programs: &[(PathBuf, ProgramCover)],
    prefixes: &[String],
) -> Result<Report, CoverError> {
    let kernels: BTreeSet<&Path> = programs.iter().map(|(_, p)| p.kernel.as_path()).collect();
    let kernel = match kernels.into_iter().collect::<Vec<_>>()[..] {
        [k] => k.to_path_buf(),
        [] => return Err(CoverError::NoCoverage),
        ref many => {
            return Err(CoverError::ManyKernels {
                kernels: many.iter().map(|k| k.to_path_buf()).collect(),
            })
        }
    };
    let k = sites::CoverKernel::open(&kernel)?;
    let in_scope = |file: &str| prefixes.iter().any(|p| file.starts_with(p.as_str()));

    let mut files: BTreeMap<String, FileCover> = BTreeMap::new();
    // Call site -> its line, for the sites in the report's files.
    let mut site_line: BTreeMap<u64, (String, u32)> = BTreeMap::new();
    for &site in &k.call_sites {
        let Some((file, line)) = k.line(site) else {
            continue;
        };
        if !in_scope(&file) {
            continue;
        }
        let f = files.entry(file.clone()).or_default();
        f.lines.entry(line).or_insert(false);
        if let Some((func, _, _)) = k.sym.symbols().containing(site) {
            f.functions
                .entry(func.to_string())
                .or_default()
                .insert(line);
        }
        site_line.insert(site, (file, line));
    }

    let mut all = BTreeSet::new();
    let (mut traced, mut full) = (0, 0);
    let mut counts = super::gcov::GcovCounts::default();
    for (_, p) in programs {
        all.extend(p.pcs.as_slice().iter().copied());
        traced += p.traced;
        full += p.full;
        counts.merge(&p.gcov);
    }
    let gcov = match counts.is_empty() {
        true => BTreeMap::new(),
        false => {
            let entry = kernel.parent().unwrap_or(Path::new("."));
            super::gcov::lines(entry, &counts)?
        }
    };
    let (mut pcs_in_files, mut pcs_unplaced) = (0, 0);
    for pc in &all {
        let ret = k.stext.wrapping_add(*pc);
        let site = ret.wrapping_sub(CALL_LEN);
        let place = match k.call_sites.contains(&site) {
            true => site_line.get(&site).cloned(),
            false => match k.line(ret.wrapping_sub(1)) {
                Some((file, line)) => {
                    let known = files
                        .get(&file)
                        .is_some_and(|f| f.lines.contains_key(&line));
                    if !known && in_scope(&file) {
                        pcs_unplaced += 1;
                    }
                    known.then_some((file, line))
                }
                None => {
                    pcs_unplaced += 1;
                    None
                }
            },
        };
        if let Some((file, line)) = place {
            pcs_in_files += 1;
            if let Some(f) = files.get_mut(&file) {
                f.lines.insert(line, true);
            }
        }
    }
    Ok(Report {
        kernel,
        release: k.record.release,
        src: k.record.src,
        prefixes: prefixes.to_vec(),
        programs: programs.len(),
        traced,
        full,
        pcs: all.len(),
        pcs_in_files,
        pcs_unplaced,
        files,
        gcov,
    })
}
