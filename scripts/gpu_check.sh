#!/usr/bin/env bash
# The GPU check of the Triton selective scan, in under 8 minutes on one CUDA GPU:
#   1. the tests marked `gpu` (Triton against the reference, bf16 autocast, mamba_ssm);
#   2. seconds per training step (scripts/benchmarks/training.py --device cuda) of aero,
#      aeromamba and aeromamba_official at batch 1 and 4 x 4 s, fp32 and bf16, and of aeromamba
#      at batch 1 fp32 with the Triton scan switched off (the PyTorch block scan);
#   3. 200 steps of `train.py` for aeromamba on a synthetic corpus, checking that the loss falls;
#   4. the Triton scan's forward + backward time for several tiles (for tuning).
# Everything goes to $OUT (default results/gpu_check): env.txt, tests.log, benchmark.txt
# (one line per run; failures in benchmark.log), train.log, history.json, tiles.md,
# summary.txt.
#
#   OUT=/some/folder bash scripts/gpu_check.sh
#
# Needs CUDA PyTorch. Missing packages are installed from .whl/ when present (made beforehand
# by scripts/gpu_wheels.sh on a machine with PyPI, for a GPU machine without a network), else
# with `pip install -e .`; Triton with `pip install triton`.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results/gpu_check}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
deadline=$((SECONDS + 470)) # leaves a margin under 8 minutes

# seconds for the next step: at most $1, never past the deadline
budget() {
    local left=$((deadline - SECONDS))
    echo $((left < $1 ? (left > 1 ? left : 1) : $1))
}

# --- dependencies ----------------------------------------------------------------------------
if compgen -G ".whl/*.whl" >/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/aeromamba-site .whl/*.whl
    export PYTHONPATH=/tmp/aeromamba-site${PYTHONPATH:+:$PYTHONPATH}
fi
if ! $PY -c "import soundfile, soxr, hydra, omegaconf, scipy, tqdm" 2>/dev/null; then
    $PY -m pip install -q -e . || echo "pip install -e . failed: run scripts/gpu_wheels.sh first"
fi
$PY -c "import triton" 2>/dev/null || $PY -m pip install -q triton
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
{
    git rev-parse HEAD 2>/dev/null
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    $PY -c "import torch, triton, numpy; print('torch', torch.__version__, 'triton', \
triton.__version__, 'numpy', numpy.__version__, 'cuda', torch.cuda.is_available())"
} >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
if ! $PY -c "import torch; assert torch.cuda.is_available()"; then
    echo "no CUDA device: nothing to check" | tee "$OUT/summary.txt"
    exit 1
fi

# --- 1. tests ----------------------------------------------------------------------------
timeout "$(budget 150)" $PY -m pytest -q -m gpu --continue-on-collection-errors \
    -p no:cacheprovider tests >"$OUT/tests.log" 2>&1
tests_status=$?
tail -n 3 "$OUT/tests.log"

# --- 2. training-step benchmark --------------------------------------------------------------
bench() { # bench 1|0 ARGS...: one run, with the Triton scan on (1) or off (0)
    local scan=$1 line
    shift
    line=$(AEROMAMBA_TRITON_SCAN=$scan timeout "$(budget 60)" $PY scripts/benchmarks/training.py \
        --device cuda --segment 4 --steps 5 "$@" 2>>"$OUT/benchmark.log" | tail -n 1)
    echo "${line:-failed: $*}" | tee -a "$OUT/benchmark.txt"
}
: >"$OUT/benchmark.txt"
for variant in aero aeromamba aeromamba_official; do
    for batch in 1 4; do
        for amp in none bf16; do
            bench 1 --variant "$variant" --batch "$batch" --amp "$amp"
        done
    done
done
echo "the line below: Triton scan switched off (the PyTorch block scan)" >>"$OUT/benchmark.txt"
bench 0 --variant aeromamba --batch 1 --amp none

# --- 3. a short training on synthetic music --------------------------------------------------
data=${TMPDIR:-/tmp}/aeromamba-gpu-check
rm -rf "$data/run"
{
    timeout "$(budget 60)" $PY scripts/make_synthetic_corpus.py "$data/synthetic" --minutes 10
    timeout "$(budget 300)" $PY train.py device=cuda experiment=aeromamba \
        dset.source="$data/synthetic" dset.root="$data/synthetic_prepared" \
        epochs=10 max_steps_per_epoch=20 eval_every=10 max_valid_items=8 \
        wandb.mode=disabled hydra.run.dir="$data/run"
} >"$OUT/train.log" 2>&1
cp "$data/run/history.json" "$OUT/" 2>/dev/null

# --- 4. tiles of the Triton scan -------------------------------------------------------------
timeout "$(budget 90)" $PY scripts/benchmarks/triton_scan.py >"$OUT/tiles.md" 2>&1
cat "$OUT/tiles.md"
$PY - "$OUT/history.json" "$tests_status" <<'EOF' | tee "$OUT/summary.txt"
import json
import sys

path, tests_status = sys.argv[1], int(sys.argv[2])
print(f"gpu tests: {'passed' if tests_status == 0 else f'FAILED (pytest exit {tests_status})'}")
try:
    history = json.load(open(path))
except (OSError, ValueError) as err:
    sys.exit(f"training: no history ({err}); see train.log")
losses = [entry["train"]["mrstft"] for entry in history]
print(f"training: {history[-1]['step']} steps; mean MR-STFT loss per epoch:")
print(" ".join(f"{loss:.3f}" for loss in losses))
falls = len(losses) > 1 and sum(losses[-2:]) / 2 < losses[0]
print(f"the loss {'falls' if falls else 'does NOT fall'} (last two epochs against the first)")
EOF
