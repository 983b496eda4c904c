#!/usr/bin/env bash
# Bounded fuzzing run for CI: build every cargo-fuzz target once, run each for SECONDS
# (default 10) over a scratch corpus plus the committed seeds, print a summary, and fail if
# any target crashed (a panic, a failed assertion, a timeout or running out of memory).
#
#   fuzz/run.sh [SECONDS]
#
# Works from any directory, on a clean checkout, on the stable toolchain (RUSTC_BOOTSTRAP=1
# unlocks the nightly flags cargo-fuzz needs). Installs the pinned cargo-fuzz when missing.
# Environment:
#   FUZZ_PARALLEL  targets run at the same time (default 2, one per core on CI)
#   FUZZ_TARGETS   space-separated subset of targets (default: all of `cargo fuzz list`)
#   CARGO_BUILD_JOBS  build parallelism (default 2)
# Output: fuzz/target/corpus/<target>/ (grown corpus, kept between runs),
# fuzz/target/fuzz-logs/<target>.log, fuzz/artifacts/<target>/ (crashing inputs).
set -euo pipefail

CARGO_FUZZ_VERSION=0.13.2
SECONDS_PER_TARGET="${1:-10}"
PARALLEL="${FUZZ_PARALLEL:-2}"
if ! [[ "$SECONDS_PER_TARGET" =~ ^[0-9]+$ && "$SECONDS_PER_TARGET" -gt 0 ]]; then
    echo "usage: $0 [SECONDS] (a positive whole number, default 10)" >&2
    exit 2
fi

cd "$(dirname "$0")"
FUZZ_DIR="$(pwd)"
export RUSTC_BOOTSTRAP=1
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
export CARGO_TERM_COLOR=never

if [[ "$(cargo fuzz --version 2>/dev/null || true)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
    echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --version "=$CARGO_FUZZ_VERSION" --locked
fi

mapfile -t all_targets < <(cargo fuzz list)
if [[ -n "${FUZZ_TARGETS:-}" ]]; then
    read -r -a targets <<<"$FUZZ_TARGETS"
    for t in "${targets[@]}"; do
        if [[ " ${all_targets[*]} " != *" $t "* ]]; then
            echo "unknown fuzz target '$t'; targets: ${all_targets[*]}" >&2
            exit 2
        fi
    done
else
    targets=("${all_targets[@]}")
fi

# `--sanitizer none`: every crate here denies `unsafe_code`, so AddressSanitizer would find
# nothing a panic does not already report, and it makes the build and the runs much slower.
# Debug assertions and overflow checks stay on (cargo-fuzz's default).
echo "== building fuzz targets"
build_start=$(date +%s)
cargo fuzz build --sanitizer none
echo "   built in $(($(date +%s) - build_start)) s"

host=$(rustc -vV | sed -n 's/^host: //p')
# cargo puts the binaries under CARGO_TARGET_DIR when it is set.
target_dir="${CARGO_TARGET_DIR:-$FUZZ_DIR/target}"
[[ "$target_dir" = /* ]] || target_dir="$FUZZ_DIR/$target_dir"
bin_dir="$target_dir/$host/release"
log_dir="$FUZZ_DIR/target/fuzz-logs"
mkdir -p "$log_dir"

# Targets whose inputs are lists or documents get room beyond libFuzzer's 4096-byte
# default: the baggage limit is 8192 bytes, 32 tracestate members reach 16 KiB.
max_len() {
    case "$1" in
        baggage | tracestate | propagator_* | cli_decode | otlp_* | zipkin_json) echo 20000 ;;
        *) echo 4096 ;;
    esac
}

run_one() {
    local t=$1
    local corpus="$FUZZ_DIR/target/corpus/$t" seeds="$FUZZ_DIR/seeds/$t"
    local artifacts="$FUZZ_DIR/artifacts/$t" log="$log_dir/$t.log" stamp="$log_dir/$t.start"
    mkdir -p "$corpus" "$artifacts"
    touch "$stamp"
    # New inputs go to the first directory (scratch); the seeds are only read.
    local dirs=("$corpus")
    if [[ -d "$seeds" ]]; then
        dirs+=("$seeds")
    fi
    local rc=0
    timeout --kill-after=10 $((SECONDS_PER_TARGET + 120)) \
        "$bin_dir/$t" "${dirs[@]}" \
        -max_total_time="$SECONDS_PER_TARGET" \
        -max_len="$(max_len "$t")" \
        -timeout=20 \
        -rss_limit_mb=2048 \
        -print_final_stats=1 \
        -artifact_prefix="$artifacts/" \
        >"$log" 2>&1 || rc=$?
    local execs crashes corpus_size
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    crashes=$(find "$artifacts" -type f -newer "$stamp" | wc -l)
    if [[ $rc -ne 0 && $crashes -eq 0 ]]; then
        crashes=1 # died without writing an input (e.g. killed by the timeout above)
    fi
    corpus_size=$(find "$corpus" -type f | wc -l)
    echo "$t ${execs:-0} $crashes $corpus_size $rc" >"$log_dir/$t.result"
    echo "   $t: #${execs:-0} execs, $crashes crash(es), corpus $corpus_size (exit $rc)"
}

echo "== running ${#targets[@]} targets for $SECONDS_PER_TARGET s each, $PARALLEL at a time"
run_start=$(date +%s)
for t in "${targets[@]}"; do
    rm -f "$log_dir/$t.result"
    while [[ $(jobs -rp | wc -l) -ge $PARALLEL ]]; do
        wait -n || true
    done
    run_one "$t" &
done
wait

failed=0
echo
printf '%-22s %12s %8s %8s\n' target execs crashes corpus
for t in "${targets[@]}"; do
    if [[ -f "$log_dir/$t.result" ]]; then
        read -r _ execs crashes corpus_size _ <"$log_dir/$t.result"
    else
        execs=0 crashes=1 corpus_size=0
    fi
    printf '%-22s %12s %8s %8s\n' "$t" "$execs" "$crashes" "$corpus_size"
    if [[ $crashes -ne 0 ]]; then
        failed=1
    fi
done
echo "fuzzing took $(($(date +%s) - run_start)) s"

if [[ $failed -ne 0 ]]; then
    for t in "${targets[@]}"; do
        crashes=1
        if [[ -f "$log_dir/$t.result" ]]; then
            read -r _ _ crashes _ _ <"$log_dir/$t.result"
        fi
        if [[ $crashes -ne 0 ]]; then
            echo
            echo "== $t crashed (log: $log_dir/$t.log)"
            # The panic message (not the backtrace), then libFuzzer's verdict and the input.
            sed -n '/panicked at/,/^stack backtrace:/p' "$log_dir/$t.log" | head -n 20
            grep -E '^(==[0-9]+== ERROR|SUMMARY|artifact_prefix|Base64)' "$log_dir/$t.log" || true
            input=$(find "$FUZZ_DIR/artifacts/$t" -type f -newer "$log_dir/$t.start" | head -n 1)
            echo "reproduce: (cd $FUZZ_DIR && RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none $t ${input:-<input>})"
        fi
    done
    exit 1
fi
