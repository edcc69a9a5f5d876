//! `ccwrig triage LOGFILE...`: the crash reports of saved console logs, one JSON object each.

use super::crash::{self, CrashKind};
use super::OracleError;
use serde::Serialize;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TriageLine {
    pub file: String,
    pub title: String,
    pub kind: CrashKind,
    pub guilty: Option<String>,
    pub alive: bool,
    /// Equal for reports of the same bug (see [`crash::dedup_key`]).
    pub dedup_key: String,
    pub start_line: usize,
}

/// Reports of one log file; empty for a clean log. Invalid UTF-8 is replaced, not fatal:
/// console captures can hold binary noise.
pub fn triage(path: &Path) -> Result<Vec<TriageLine>, OracleError> {
    let bytes = std::fs::read(path).map_err(|source| OracleError::Read {
        path: path.to_owned(),
        source,
    })?;
    let text = String::from_utf8_lossy(&bytes);
    Ok(crash::detect(&text)
        .iter()
        .map(|r| TriageLine {
            file: path.display().to_string(),
            title: r.title.clone(),
            kind: r.kind,
            guilty: r.guilty.clone(),
            alive: r.alive,
            dedup_key: crash::dedup_key(r),
            start_line: r.start_line,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_log_triages_to_one_json_line() {
        let seed = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/reports/seed-5.15-rc1-vfio-ccw-teardown-oops.log");
        let lines = triage(&seed).expect("seed log readable");
        assert_eq!(lines.len(), 1);
        let json = serde_json::to_value(&lines[0]).expect("serialises");
        assert_eq!(json["kind"], "program_check");
        assert_eq!(json["title"], "illegal operation in vfio_ccw_mdev_ioctl");
        assert_eq!(json["guilty"], "vfio_ccw_mdev_ioctl");
        assert!(triage(Path::new("/nonexistent/log")).is_err());
    }
}
