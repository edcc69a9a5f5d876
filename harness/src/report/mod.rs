//! Reports of runs: JUnit XML for CI systems that do not use nextest, and the plain-text bug
//! report for a mailing list.

pub mod junit;
pub mod text;
