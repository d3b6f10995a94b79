#!/usr/bin/env bash
# optexp's CUDA paths on one GPU, in one command (issue 34): the tests marked `cuda`
# (tests/test_cuda.py), then speed ratios measured in this one run on this card:
#   - the CIFAR-10-shaped CNN: optexp's training against the hand-written loop
#     (benchmarks/run.py --parts cnn), and AMP's speed-up over fp32 (bf16, fp16; and
#     channels-last) of the same run;
#   - seeds, and trials (one learning rate each), as one vectorized group against separate
#     runs (benchmarks/vectorized.py).
# About 5 minutes on one H100. Run from anywhere, with optexp's dependencies installed
# (pip install -e ".[dev]"):
#
#   bash benchmarks/gpu.sh                  # PYTHON=... picks the interpreter
#   REPS=5 SEEDS=10 bash benchmarks/gpu.sh  # more repetitions (REPS), group size (SEEDS)
#
# It prints the card's name first. The benchmarks run even when a test fails, so one
# session on a GPU gives both; the exit status is non-zero if a test (or a benchmark)
# failed, and 2 if there is no CUDA device or a dependency is missing.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
REPS=${REPS:-3}
SEEDS=${SEEDS:-10}
export PYTHONUNBUFFERED=1

if ! "$PYTHON" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
  echo "gpu.sh: $PYTHON's torch sees no CUDA device; nothing here would run on a GPU" >&2
  exit 2
fi
if ! "$PYTHON" -c 'import xdist, mnist1d, tests.test_cuda' 2>/dev/null; then
  "$PYTHON" -c 'import xdist, mnist1d, tests.test_cuda'  # shows what is missing
  echo "gpu.sh: install optexp's dependencies first: $PYTHON -m pip install -e '.[dev]'" >&2
  exit 2
fi

smi=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null \
  | head -n 1)
echo "card: $("$PYTHON" -c 'import torch; print(torch.cuda.get_device_name())')" \
  "(nvidia-smi: ${smi:-not found})"
"$PYTHON" -c 'import torch; print(f"torch {torch.__version__}, CUDA {torch.version.cuda}")'
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(
  git diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"

section() {  # a heading with the seconds since the start
  echo
  echo "== $1 (at ${SECONDS} s)"
}

section "tests marked cuda: tests/test_cuda.py"
"$PYTHON" -m pytest -m cuda -n 4 -rs -p no:cacheprovider tests/test_cuda.py
tests=$?

section "CNN: optexp vs the hand-written loop (time ratio: optexp / reference), AMP over fp32"
"$PYTHON" benchmarks/run.py --parts cnn --device cuda --reps "$REPS"
cnn=$?

section "vectorized seeds and trials vs separate runs (each time also as a multiple of one run's)"
"$PYTHON" benchmarks/vectorized.py --parts step,default,trials --reps 1 --seeds "$SEEDS"
vectorized=$?

section "done"
echo "tests exit ${tests}, cnn benchmark exit ${cnn}, vectorized benchmark exit ${vectorized}"
if ((tests != 0)); then exit 1; fi
if ((cnn != 0 || vectorized != 0)); then exit 3; fi
