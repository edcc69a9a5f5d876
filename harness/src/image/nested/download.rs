//! The packages as files: `apt-get download` of what is not cached in `debs/` yet, each file
//! checked against the SHA-256 apt expects.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::{run, NestedError, NestedReport, Plan};
use crate::cache;
use crate::image::{io_err, ImageError};

/// A downloaded package file.
#[derive(Debug, Clone)]
pub struct Deb {
    pub package: String,
    pub path: PathBuf,
    pub sha256: String,
}

fn sha256_file(path: &Path) -> Result<String, ImageError> {
    let data = std::fs::read(path).map_err(io_err(path))?;
    Ok(hex::encode(Sha256::digest(&data)))
}

/// Downloads what is not in `debs/` yet and checks every file against apt's checksum.
pub fn download(plan: &Plan, report: &mut NestedReport) -> Result<Vec<Deb>, ImageError> {
    let dir = cache::dir("nested")?.join("debs");
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let specs = &plan.specs;
    let wanted = &plan.files;
    // apt-get lists files in its own order; a file is `<package>_<version>_<arch>.deb`.
    let absent: BTreeSet<&str> = wanted
        .iter()
        .filter(|(file, _)| !dir.join(file).exists())
        .map(|(file, _)| file.split('_').next().unwrap_or(file))
        .collect();
    let missing: Vec<&str> = specs
        .iter()
        .filter(|s| absent.contains(s.name.as_str()))
        .map(|s| s.spec.as_str())
        .collect();
    if !missing.is_empty() {
        // A separate directory, so an interrupted download never looks like a cached file.
        let incoming = dir.join(".incoming");
        let _ = std::fs::remove_dir_all(&incoming);
        std::fs::create_dir_all(&incoming).map_err(io_err(&incoming))?;
        run(Command::new("apt-get")
            .current_dir(&incoming)
            .arg("download")
            .args(&missing))?;
        for e in std::fs::read_dir(&incoming)
            .map_err(io_err(&incoming))?
            .flatten()
        {
            let to = dir.join(e.file_name());
            std::fs::rename(e.path(), &to).map_err(io_err(&to))?;
        }
        report.downloaded = missing.len();
    }
    let mut debs = Vec::new();
    for (file, want) in wanted {
        let path = dir.join(file);
        let got = sha256_file(&path)?;
        if &got != want {
            let _ = std::fs::remove_file(&path);
            return Err(NestedError::Checksum {
                file: file.clone(),
                got,
                want: want.clone(),
            }
            .into());
        }
        let package = file.split('_').next().unwrap_or(file).to_string();
        debs.push(Deb {
            package,
            path,
            sha256: got,
        });
    }
    debs.sort_by(|a, b| a.package.cmp(&b.package));
    Ok(debs)
}
