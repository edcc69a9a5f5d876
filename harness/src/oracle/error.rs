use std::path::PathBuf;

/// Errors of the oracles. Detection itself never fails on odd input; only reading
/// files and parsing kernel sources can.
#[derive(Debug, thiserror::Error)]
pub enum OracleError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("kernel header: {0}")]
    Header(String),
}
