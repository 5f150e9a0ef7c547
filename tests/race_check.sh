#!/usr/bin/env bash
# Race check of the portable train step, the code the GPU runs on a thread block: builds the CPU
# extension with ThreadSanitizer in its own folder (build/tsan; the library in hanami_torch/ is
# left alone) and runs tests/test_portable_train.py on it. Those tests run the step with four
# threads and a barrier, the GPU's execution model; a data race between two items of a phase, or
# a missing sync, fails the run. Skipped (exit 0) where the compiler has no libtsan, except in CI
# (CI=true or HANAMI_REQUIRE_DATA=1, as .ci/run sets), where that is an error (exit 1).
#
#   tests/race_check.sh            (PYTHON: default .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-.venv/bin/python}"
tsan="$("${CXX:-c++}" -print-file-name=libtsan.so)"
if [ ! -e "$tsan" ]; then
    if [ "${CI:-}" = "true" ] || [ "${HANAMI_REQUIRE_DATA:-}" = "1" ]; then
        echo "race check failed: the compiler has no libtsan.so (required in CI; install libtsan, e.g. the gcc package's libtsan2)"
        exit 1
    fi
    echo "race check skipped: the compiler has no libtsan.so"
    exit 0
fi
out=build/tsan
CFLAGS="-fsanitize=thread -g" LDFLAGS="-fsanitize=thread" \
    "$py" setup.py --quiet build_ext --build-lib "$out/lib" --build-temp "$out/tmp" > "$out.log" 2>&1 ||
    { tail -n 40 "$out.log"; echo "race check: the instrumented build failed"; exit 1; }
# the package's Python files with the instrumented library, first on the path
rm -rf "$out/pkg"
mkdir -p "$out/pkg/hanami_torch"
(cd hanami_torch && find . -name '*.py' -exec cp --parents {} "../$out/pkg/hanami_torch/" \;)
cp "$out"/lib/hanami_torch/_C*.so "$out/pkg/hanami_torch/"
root="$PWD"
case "$py" in /*) ;; */*) py="$root/$py" ;; esac  # keep the venv's path (no symlink resolution)
cd "$out/pkg"  # Python puts the working folder first on its path: this package, not the repository's
"$py" -c "import hanami_torch, sys; sys.exit(not hanami_torch.__file__.startswith('$root/$out/pkg'))" ||
    { echo "race check: the instrumented package is not the one imported"; exit 1; }
LD_PRELOAD="$tsan" TSAN_OPTIONS="halt_on_error=1 exitcode=66" \
    "$py" -m pytest -q -p no:cacheprovider --rootdir "$root" "$root/tests/test_portable_train.py"
