//! Reports of runs: JUnit XML for CI systems that do not use nextest.

pub mod junit;
