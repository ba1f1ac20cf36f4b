#!/usr/bin/env bash
# cotune's one entry point for a fresh Debian 12 machine (run as root, or with sudo available):
#
#   scripts/setup.sh demo    install dependencies, build, run the demo (trains a tiny model on CPU)
#   scripts/setup.sh test    install dependencies, build, run every test that needs no GPU
#   scripts/setup.sh build   install dependencies and build only
#
# Environment: BUILD_DIR (default build), COTUNE_CUDA (AUTO|ON|OFF, default AUTO: the CUDA backend is
# compiled whenever nvcc is found, e.g. /usr/local/cuda), CMAKE_CUDA_ARCHITECTURES (default 90a;80;89),
# COTUNE_SANITIZE_TESTS=1 to also build and run the tests under AddressSanitizer + UBSan and run each libFuzzer
# target for FUZZ_SECONDS (default 5) (CI does).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-demo}
BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-$(nproc)}

packages=(build-essential cmake ninja-build pkg-config git
  libsimdjson-dev nlohmann-json3-dev libcli11-dev libfmt-dev libtomlplusplus-dev
  libopenblas-openmp-dev libpcre2-dev libutf8proc-dev libcurl4-openssl-dev libssl-dev libxxhash-dev
  libcpp-httplib-dev libyaml-cpp-dev libsnappy-dev libzstd-dev zlib1g-dev clang mold tmux
  libgtest-dev libgmock-dev libbenchmark-dev)

install_deps() {
  local missing=()
  for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing: ${missing[*]}"
    local sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

configure_and_build() {  # dir, extra cmake args...
  local dir=$1; shift
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCOTUNE_CUDA="${COTUNE_CUDA:-AUTO}" \
    ${CMAKE_CUDA_ARCHITECTURES:+-DCMAKE_CUDA_ARCHITECTURES="$CMAKE_CUDA_ARCHITECTURES"} "$@"
  cmake --build "$dir" -j "$JOBS"
}

# libFuzzer targets (tests/fuzz/README.md), from a clang build with COTUNE_FUZZ=ON; each target
# runs FUZZ_SECONDS (default 5) from its seed corpus, new inputs going to a scratch folder, never the repo.
run_fuzzers() {  # dir (a COTUNE_FUZZ=ON build)
  local t scratch
  for t in $(sed -n 's/^set(fuzz_targets \(.*\))$/\1/p' tests/fuzz/CMakeLists.txt); do
    scratch=$(mktemp -d)
    rm -f "$1/fuzz/crash-$t-"*
    echo "== fuzz_$t for ${FUZZ_SECONDS:-5} s"
    "$1/fuzz/fuzz_$t" -max_total_time="${FUZZ_SECONDS:-5}" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
      -artifact_prefix="$1/fuzz/crash-$t-" "$scratch" "tests/fuzz/corpus/$t" 2>&1 | grep -E "^(stat::|==|SUMMARY)|ERROR|Done" || true
    rm -rf "$scratch"
    if ls "$1/fuzz/crash-$t-"* >/dev/null 2>&1; then
      echo "fuzz_$t found a crash: $(ls "$1/fuzz/crash-$t-"*)"; return 1
    fi
  done
}

run_tests() {  # dir
  # `gpu`-labelled tests are built here but run only on a GPU machine: ctest -L gpu.
  ctest --test-dir "$1" -LE gpu --output-on-failure -j "$JOBS" --timeout 600
}

install_deps
case "$mode" in
  build)
    configure_and_build "$BUILD_DIR" ;;
  test)
    # The benchmarks are no test's input: CI leaves them out of this build (~90 CPU-s on 2 cores); `build` and
    # `demo` compile them, with the same -Werror flags when COTUNE_WERROR is on.
    configure_and_build "$BUILD_DIR" -DCOTUNE_WERROR=ON -DCOTUNE_BUILD_BENCH=OFF
    run_tests "$BUILD_DIR"
    if [ "${COTUNE_SANITIZE_TESTS:-0}" = 1 ]; then
      # One clang build serves both: every test under AddressSanitizer + UBSan, and the libFuzzer targets
      # (everything compiled with -fsanitize=fuzzer-no-link,address,undefined; tests/fuzz/README.md). -O0: the
      # instrumented code compiles ~3x faster than at -O1 (45 s -> 16 s CPU for tests/track/wandb_test.cpp), which
      # matters more on 2 cores than the tests running slower.
      echo "== AddressSanitizer + UndefinedBehaviorSanitizer + libFuzzer build (clang)"
      CC=clang CXX=clang++ COTUNE_CUDA=OFF configure_and_build "$BUILD_DIR-asan" -DCMAKE_BUILD_TYPE=None \
        -DCMAKE_CXX_FLAGS="-O0" -DCOTUNE_WERROR=ON -DCOTUNE_FUZZ=ON -DCOTUNE_BUILD_BENCH=OFF
      ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 run_tests "$BUILD_DIR-asan"
      echo "== libFuzzer targets"
      run_fuzzers "$BUILD_DIR-asan"
    fi ;;
  demo)
    configure_and_build "$BUILD_DIR"
    exec bash scripts/demo.sh "$BUILD_DIR/bin/cotune" ;;
  *)
    echo "usage: scripts/setup.sh demo|test|build" >&2; exit 2 ;;
esac
