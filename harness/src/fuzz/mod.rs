//! The fuzzer: generated programs (scenarios) run back to back in long-lived VMs, judged by
//! the oracles, with new findings deduplicated into a corpus, measured and shrunk.
//!
//! `gen` makes programs, `worker` runs them in one VM and keeps it fit, `interest` says which
//! verdict findings count and what makes two the same, `corpus` stores them (`keep` says what of each), `shrink` and
//! `triage` turn a hit into a small reproducer, `campaign` drives N workers for a time box or
//! a program count, `summary` writes the result up. Coverage feedback: `guide` chooses fresh
//! programs or `mutate`s of the `inputs` that added coverage, and keeps new ones; `fault` says
//! which steps may have an allocation failed, for both.

pub mod campaign;
pub mod corpus;
pub mod fault;
pub mod gen;
pub mod guide;
pub mod inputs;
pub mod interest;
mod keep;
pub mod mutate;
pub mod replay;
pub mod shrink;
pub mod sound;
pub mod summary;
pub mod triage;
pub mod worker;

use std::path::PathBuf;

pub use campaign::{Campaign, CampaignConfig, Stats, Stop};
pub use gen::{GenConfig, Generator};
pub use summary::Summary;

#[derive(Debug, thiserror::Error)]
pub enum FuzzError {
    #[error("worker {worker}: the VM does not boot: {message}")]
    Boot { worker: usize, message: String },
    #[error("worker {worker}: {message}")]
    Run { worker: usize, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("corpus {path}: {message}")]
    Corpus { path: PathBuf, message: String },
}
