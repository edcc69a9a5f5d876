#!/usr/bin/env bash
# The CI job: dependencies, build, tests. Called by .ci/run on a clean clone.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ]; then
  bash ci/install-deps.sh
else
  sudo -n bash ci/install-deps.sh
fi

# Kernel (fast profile) and image are built once up front, with progress in the log, so the
# tests below get cache hits instead of each racing to build them.
cargo build --locked --bin ccwrig
./target/debug/ccwrig kernel build --profile fast
# The planted seed bug (tests/repro_c.rs, tests/report.rs): a full build of its own, too long
# to happen inside a test's time limit.
./target/debug/ccwrig kernel build --profile fast --patches kernel/patches/notoper-open-null
# The KCOV kernel (tests/kcov.rs: a scenario's PCs symbolize into vfio_ccw_*.c).
./target/debug/ccwrig kernel build --profile fast --cover
./target/debug/ccwrig image
./target/debug/ccwrig image --nested

# The test command from README.md, with the ci profile (JUnit in target/nextest/ci/junit.xml,
# no fail-fast) chosen through the environment so the command stays the README's.
export NEXTEST_PROFILE=ci
cargo nextest run
