#!/usr/bin/env bash
# Runs every fuzz target for a bounded time and fails on any finding.
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
#
# SECONDS_PER_TARGET defaults to 60 (what CI uses); targets default to all.
# Works on the stable toolchain: targets are built with libFuzzer's coverage
# instrumentation and no sanitizer (`-s none`; our code has no `unsafe`).
# FUZZ_SANITIZER=address adds AddressSanitizer, which needs
# RUSTC_BOOTSTRAP=1 on stable (set here). FUZZ_JOBS=N runs N worker processes
# per target. Findings are written to fuzz/artifacts/<target>/; the growing
# corpus to fuzz/corpus/<target>/ (both git-ignored).
set -euo pipefail

cd "$(dirname "$0")"
seconds="${1:-60}"
shift || true
# A bound under one second would run nothing and still pass.
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
    echo "fuzz/run.sh: seconds per target must be a whole number of at least 1 (FUZZ_SECONDS), got '$seconds'" >&2
    exit 2
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(identity config_toml config_yaml predicate render)
fi
sanitizer="${FUZZ_SANITIZER:-none}"
jobs="${FUZZ_JOBS:-1}"
cargo_fuzz_version="0.13.2"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz $cargo_fuzz_version" >&2
    cargo install cargo-fuzz --version "$cargo_fuzz_version" --locked
fi
if [ "$sanitizer" != "none" ]; then
    # -Zsanitizer is unstable; stable toolchains ship the runtimes.
    export RUSTC_BOOTSTRAP=1
fi

# Unoptimised builds with overflow checks: the instrumented build of the
# whole dependency tree stays short enough for CI.
flags=(--dev --sanitizer "$sanitizer")

# Several workers sharing one corpus (libFuzzer's fork mode).
parallel_flags() {
    if [ "$jobs" -gt 1 ]; then
        echo "-fork=$jobs"
    fi
}

dict_for() {
    case "$1" in
        predicate) echo "-dict=dicts/predicate.dict" ;;
        config_toml) echo "-dict=dicts/toml.dict" ;;
        config_yaml) echo "-dict=dicts/yaml.dict" ;;
        *) ;;
    esac
}

# Input sizes: identity files are a few KB; conditions are cut at 16 KiB;
# the render input is structured, a few KB describe megabytes of text, so
# it starts at full size rather than growing slowly.
len_flags() {
    case "$1" in
        identity) echo "-max_len=8192" ;;
        predicate) echo "-max_len=20000" ;;
        render) echo "-max_len=4096 -len_control=0" ;;
        *) echo "-max_len=16384" ;;
    esac
}

cargo fuzz build "${flags[@]}"

failed=()
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "seeds/$t"
    echo "=== $t: ${seconds}s" >&2
    # shellcheck disable=SC2046
    if ! cargo fuzz run "${flags[@]}" "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 \
        $(parallel_flags) $(dict_for "$t") $(len_flags "$t"); then
        failed+=("$t")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzzing found problems in: ${failed[*]}; reproducers are in fuzz/artifacts/<target>/" >&2
    echo "replay one with: cargo fuzz run ${flags[*]} <target> fuzz/artifacts/<target>/<file>" >&2
    exit 1
fi
echo "no findings in ${targets[*]} (${seconds}s each)" >&2
