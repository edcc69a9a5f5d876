#!/usr/bin/env bash
# Nightly fuzz run: a time-boxed `ccwrig fuzz` on a sanitizer kernel with a seed derived from
# the date (and the shard number), a markdown summary, and a non-zero exit when the run found
# something the corpus did not know yet. The kernel is one of debug's two halves, kasan and
# lockdep, by turns (night and shard): a debug program took 50 s, a kasan one 9.6 s and a
# lockdep one 17 s (kernel/configs/README.md, 'Which detector costs what'), so two nights of
# halves run each bug class through more programs than two nights of debug.
#
# Environment (all optional):
#   FUZZ_DURATION   time box                      (default 60m)
#   FUZZ_JOBS       VMs in parallel               (default: number of cores)
#   FUZZ_SHARD      this machine's shard, 0-based (default 0)
#   FUZZ_CORPUS     persistent findings directory (default fuzz-corpus; cache it between runs)
#   FUZZ_PROFILE    kernel profile                (default kasan or lockdep, by turns)
#   FUZZ_SUMMARY    markdown summary path         (default fuzz-summary.md)
#   FUZZ_EXTRA      extra arguments for ccwrig fuzz (e.g. "--patches kernel/patches/x")
#   CCWRIG_BIN      a built ccwrig to use instead of building one (a CI job that got it as an
#                   artifact)
# Exit: 0 nothing new, 1 new finding(s), 2 harness error.
set -euo pipefail

cd "$(dirname "$0")/.."

duration=${FUZZ_DURATION:-60m}
jobs=${FUZZ_JOBS:-$(nproc)}
shard=${FUZZ_SHARD:-0}
corpus=${FUZZ_CORPUS:-fuzz-corpus}
summary=${FUZZ_SUMMARY:-fuzz-summary.md}

# YYYYMMDD * 1000 + shard: every night and every shard gets its own campaign seed, and the
# same night's shard can be replayed exactly with --seed.
seed=$(( $(date -u +%Y%m%d) * 1000 + shard ))

# Days since the epoch plus the shard: consecutive nights, and a night's neighbouring shards,
# get the other half.
turn=$(( $(date -u +%s) / 86400 + shard ))
if (( turn % 2 == 0 )); then halves=kasan; else halves=lockdep; fi
profile=${FUZZ_PROFILE:-$halves}

bin=${CCWRIG_BIN:-}
if [[ -z "$bin" ]]; then
  cargo build -q --release -p ccwrig
  bin=target/release/ccwrig
fi

status=0
# shellcheck disable=SC2086
"$bin" fuzz --profile "$profile" --seed "$seed" --duration "$duration" --jobs "$jobs" \
    --corpus "$corpus" --summary-md "$summary" ${FUZZ_EXTRA:-} || status=$?

if [[ -f "$summary" ]]; then
    cat "$summary"
    if [[ -n "${GITHUB_STEP_SUMMARY:-}" ]]; then
        cat "$summary" >> "$GITHUB_STEP_SUMMARY"
    fi
fi
case $status in
    0) echo "nightly fuzz: no new findings (seed $seed)" ;;
    1) echo "nightly fuzz: NEW findings (seed $seed), see $summary and $corpus/crashes/" ;;
    *) echo "nightly fuzz: harness error (exit $status)" ;;
esac
exit "$status"
