#!/usr/bin/env bash
# The flake hunt in a bounded form for a CI job: the scenario library ROUNDS times with fresh
# seeds on the given profile; exits non-zero on any failure and prints each with its run
# directory. Every failure is a kernel bug (make it a known finding with evidence) or a
# harness defect (fix it) -- never "flaky, retry".
#   ROUNDS=3 PROFILE=fast ci/soak.sh [SCENARIO_OR_DIR...]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${ROUNDS:-3}"
profile="${PROFILE:-fast}"
cargo build --locked --release --bin ccwrig
exec ./target/release/ccwrig soak --rounds "$rounds" --profile "$profile" --out target/soak "$@"
