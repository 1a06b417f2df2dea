#!/usr/bin/env bash
# The real-card check, from a plain checkout (no install needed beyond the project's dependencies
# and CuPy):
#
#   bench/gpu_check.sh [--quick]
#
# 1. the tests marked `gpu` (tests/test_cuda_backend.py: every CUDA primitive against numpy, plus
#    injected faults), 2. bench/bench_kernels.py: one table of ratios against peers measured in the
#    same run on the same card, and a BENCH_JSON line for bench/RESULTS.md, 3. bench/bench_grade.py:
#    whole grades (--quick twice, standard once) with wall time, GPU busy share, start-up and
#    module-cache hits, and a BENCH_GRADE_JSON line.
# The benchmark runs even when a test fails (its numbers help find why); the exit status is the
# first failure's.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
PYTHON="${PYTHON:-python3}"
status=0

echo "== gpu tests"
# Modules that need packages this machine lacks are reported, not allowed to stop the gpu tests.
"$PYTHON" -m pytest -m gpu -q --continue-on-collection-errors tests || status=$?

echo "== kernel benchmark"
"$PYTHON" bench/bench_kernels.py "$@" || { rc=$?; [ "$status" -ne 0 ] || status=$rc; }

echo "== whole grades"
# --skip-standard passes through to keep a short check short.
grade_args=()
for arg in "$@"; do [ "$arg" = "--quick" ] && grade_args+=(--skip-standard); done
# On the lent machine the run records come back under $OUT (golden inputs, profile building).
[ -n "${OUT:-}" ] && grade_args+=(--out "$OUT/grades")
"$PYTHON" bench/bench_grade.py "${grade_args[@]}" || { rc=$?; [ "$status" -ne 0 ] || status=$rc; }

exit "$status"
