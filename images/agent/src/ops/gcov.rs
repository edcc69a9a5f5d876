//! `gcov`: the counters of a cover kernel's GCOV-profiled objects, read or zeroed.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use ccwrig_proto::data::{GcdaFile, Gcov};
use ccwrig_proto::GcovAction;
use serde_json::json;

use super::{OpError, OpRes};
use crate::sys;

pub fn gcov(action: GcovAction) -> OpRes {
    let root = Path::new(crate::paths::GCOV);
    if !root.is_dir() {
        return Ok(json!(Gcov::default()));
    }
    let files = match action {
        GcovAction::Read => {
            let mut paths = Vec::new();
            gcda_files(root, &mut paths)?;
            paths.sort();
            paths
                .iter()
                .map(|p| {
                    // Each open renders the object's counters as they stand then.
                    let bytes = std::fs::read(p)
                        .map_err(|e| OpError::failed(format!("reading {}: {e}", p.display())))?;
                    Ok(GcdaFile {
                        path: p.display().to_string(),
                        hex: hex(&bytes),
                    })
                })
                .collect::<Result<Vec<_>, OpError>>()?
        }
        GcovAction::Reset => {
            sys::write_attr(&format!("{}/reset", crate::paths::GCOV), "1")?;
            Vec::new()
        }
    };
    Ok(json!(Gcov {
        available: true,
        files
    }))
}

/// Every `.gcda` below `dir`. The tree mirrors the build's object directory; its `.gcno`
/// entries are links to that directory on the host, which the guest does not have.
fn gcda_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), OpError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| OpError::failed(format!("listing {}: {e}", dir.display())))?;
    for e in entries.flatten() {
        let Ok(t) = e.file_type() else { continue };
        let p = e.path();
        if t.is_dir() {
            gcda_files(&p, out)?;
        } else if t.is_file() && p.extension().is_some_and(|x| x == "gcda") {
            out.push(p);
        }
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
