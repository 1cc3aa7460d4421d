#!/usr/bin/env bash
# Train on a GPU machine for MINUTES from a packed corpus, and keep the weights: the training
# campaign (conf/recipe/cpu_campaign.yaml) continued from a start checkpoint on a sample of its
# corpus small enough to copy (the whole corpus is ~800 minutes).
#
# Where the corpus is:
#   1. pack a sample of it (mono 16-bit FLAC excerpts, train and valid splits):
#        python scripts/pack_corpus.py data/campaign_raw data/gpu_pack --mib 30
#   2. the weights to start from, a generator that had the STFT-only stage:
#        cp runs/cpu_campaign/best.pt data/gpu_pack/start.pt
#      (or the last.pt of an earlier GPU run: it holds the discriminator too, so the
#      discriminator's warm-up is skipped);
#   3. for a GPU machine without network access, the packages its image lacks (needs PyPI):
#        bash scripts/gpu_wheels.sh  (-> .whl/)
# Then copy the repository with data/gpu_pack (and .whl/) to the GPU machine and run there:
#        MINUTES=6 bash scripts/gpu_campaign.sh
#   It prepares the pack (scripts/prepare_data.py, all cores), trains
#   `train.py recipe=cpu_campaign` from start.pt for MINUTES, stops it with SIGTERM (the run
#   keeps its last finished epoch: epochs of 100 steps are checkpointed) and writes to OUT:
#   best.pt (the generator of the best validation epoch, 9 MiB), last.pt (the last epoch's
#   generator and discriminator without Adam's state, 14 MiB; checkpoint.pt with it is 50 MiB),
#   history.json, train.log (its end), prepare.log, env.txt and summary.txt. Copy OUT back
#   beside the corpus: summary.txt says how to score it (test.py on the whole test split) and
#   how to continue from it.
#
# Settings (environment): MINUTES (6, whole minutes) of training; LIMIT (none) seconds for the
# whole script, training shortened to fit it; BATCH (16) segments of 2 s; DEVICE (cuda; cpu
# for a dry run); WORKERS (4) data loaders; ADVERSARIAL_START (0) steps with the STFT loss
# alone; WARMUP (discriminator steps before the generator uses it: 0 when start.pt holds a
# discriminator, else 300); AMP (none | bf16); PACK (data/gpu_pack); START ($PACK/start.pt);
# OUT (results/gpu_campaign); WORK (${TMPDIR:-/tmp}/aeromamba-gpu-campaign: the prepared pack
# and the run); GRACE (60) seconds between SIGTERM and SIGKILL. Arguments are more train.py
# overrides, e.g. max_steps_per_epoch=5 for a CPU dry run:
#   DEVICE=cpu MINUTES=1 BATCH=2 WORKERS=0 OUT=/tmp/o bash scripts/gpu_campaign.sh \
#       max_steps_per_epoch=5 max_valid_items=4
set -uo pipefail
cd "$(dirname "$0")/.."
MINUTES=${MINUTES:-6}
LIMIT=${LIMIT:-}
BATCH=${BATCH:-16}
DEVICE=${DEVICE:-cuda}
WORKERS=${WORKERS:-4}
ADVERSARIAL_START=${ADVERSARIAL_START:-0}
AMP=${AMP:-none}
PACK=${PACK:-data/gpu_pack}
START=${START:-$PACK/start.pt}
OUT=${OUT:-results/gpu_campaign}
WORK=${WORK:-${TMPDIR:-/tmp}/aeromamba-gpu-campaign}
GRACE=${GRACE:-60}
PY=${PYTHON:-python3}
mkdir -p "$OUT" "$WORK"
rm -f "$OUT/best.pt" "$OUT/last.pt" "$OUT/history.json" # an earlier run's, if OUT is reused
: >"$OUT/summary.txt"
export PYTHONUNBUFFERED=1

stop() { # stop MESSAGE: the reason in summary.txt, exit 1
    echo "$1" | tee -a "$OUT/summary.txt"
    exit 1
}

unbar() { # a log without tqdm's progress bars (carriage-return redraws)
    tr '\r' '\n' | grep -Ev '^\s*$|[0-9]+/[0-9]+ \[[0-9:]+<'
}

# --- dependencies (as scripts/gpu_check.sh: from .whl/ where there is no network) ---------
if compgen -G ".whl/*.whl" >/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/aeromamba-site .whl/*.whl
    export PYTHONPATH=/tmp/aeromamba-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
{
    git rev-parse HEAD 2>/dev/null
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    echo "cores: $(nproc)"
    $PY -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__, \
'cuda', torch.cuda.is_available())"
} >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
$PY -c "import soundfile, soxr, hydra, omegaconf, scipy, tqdm" ||
    stop "missing packages: make .whl/ with scripts/gpu_wheels.sh and copy it here"
if [[ $DEVICE == cuda* ]] && ! $PY -c "import torch; assert torch.cuda.is_available()"; then
    stop "no CUDA device: nothing to train (DEVICE=cpu for a dry run)"
fi
[[ -f $START ]] || stop "$START: no start checkpoint (copy a best.pt there)"
[[ -d $PACK/train ]] || stop "$PACK/train: no packed corpus (scripts/pack_corpus.py)"
if [[ -z ${WARMUP:-} ]]; then # a fresh discriminator must learn before the generator heeds it
    WARMUP=$($PY -c "import sys; from aeromamba.checkpoint import load_checkpoint as load
print(0 if 'discriminator' in load(sys.argv[1]) else 300)" "$START") || stop "$START: unreadable"
fi

# --- data ---------------------------------------------------------------------------------
timeout 180 $PY scripts/prepare_data.py "$PACK" "$WORK/prepared" --workers "$(nproc)" \
    >"$WORK/prepare.log" 2>&1
prepared=$?
unbar <"$WORK/prepare.log" >"$OUT/prepare.log"
((prepared == 0)) || stop "preparing $PACK failed; see prepare.log"
tail -n 4 "$OUT/prepare.log"

# --- training -----------------------------------------------------------------------------
reserve=$((GRACE + 40)) # a late SIGKILL, then the export
seconds=$((MINUTES * 60))
if [[ -n $LIMIT ]] && ((LIMIT - SECONDS - reserve < seconds)); then
    seconds=$((LIMIT - SECONDS - reserve))
fi
((seconds > 0)) || stop "no time left to train (LIMIT=$LIMIT s, $SECONDS s used)"
run=$WORK/run
rm -rf "$run" # a fresh run directory: continue_from applies only to one without a checkpoint
echo "training from $START for $seconds s: batch $BATCH, adversarial_start" \
    "$ADVERSARIAL_START, discriminator_warmup $WARMUP, amp $AMP ${*:+(and $*)}" |
    tee -a "$OUT/summary.txt"
timeout -s TERM -k "$GRACE" "$seconds" $PY train.py recipe=cpu_campaign device="$DEVICE" \
    num_workers="$WORKERS" experiment.batch_size="$BATCH" amp="$AMP" \
    adversarial_start="$ADVERSARIAL_START" discriminator_warmup="$WARMUP" \
    continue_from="$START" dset.source="$PACK" dset.root="$WORK/prepared" \
    hydra.run.dir="$run" "$@" >"$WORK/train.log" 2>&1
status=$?
unbar <"$WORK/train.log" | tail -n 200 >"$OUT/train.log"

# --- what comes back ----------------------------------------------------------------------
$PY - "$run" "$OUT" "$status" "$seconds" "$START" <<'EOF' | tee -a "$OUT/summary.txt"
import shutil
import sys
import time
from pathlib import Path

from aeromamba.checkpoint import load_checkpoint, save_checkpoint
from aeromamba.files import atomic_path

run, out, status, seconds, start = Path(sys.argv[1]), Path(sys.argv[2]), *sys.argv[3:]
ended = "stopped at its time limit" if status == "124" else f"exited with status {status}"
print(f"train.py ran {seconds} s and {ended}")
if not (run / "checkpoint.pt").is_file():
    print("no epoch finished: nothing to bring back; see train.log")
    sys.exit(1)
package = load_checkpoint(run / "checkpoint.pt")
save_checkpoint(
    out / "last.pt",
    {
        **{key: package[key] for key in ("generator", "discriminator", "history", "config")},
        "metadata": {"epoch": package["epoch"], "step": package["step"], "started_from": start},
    },
)
for name in ("best.pt", "history.json"):
    if (run / name).is_file():
        with atomic_path(out / name) as tmp:
            shutil.copyfile(run / name, tmp)
history = package["history"]
steps = history[-1]["step"]
per_step = sum(e["seconds"] for e in history) / steps
print(f"{len(history)} epochs, {steps} steps, {per_step:.3f} s per step (validation included)")
print("epoch  step  mrstft  valid: lsd_hf  lsd    paqm")
for e in history:
    valid = [e.get("valid", {}).get(key, float("nan")) for key in ("lsd_hf", "lsd", "paqm")]
    scores = "  ".join(f"{value:.3f}" for value in valid)
    best = "  best" if e.get("best") else ""
    print(f"{e['epoch']:5d} {e['step']:5d}  {e['train']['mrstft']:.3f}          {scores}{best}")
back = sorted(p.name for p in out.iterdir() if p.suffix == ".pt")
sizes = [f"{name} ({(out / name).stat().st_size / 2**20:.1f} MiB)" for name in back]
print("written to OUT: " + ", ".join(sizes))
folder = f"runs/gpu_campaign_{time.strftime('%Y%m%d_%H%M')}"
best = "best.pt" if "best.pt" in back else "last.pt"
print(f"""beside the corpus, with these files copied from OUT to {folder}/:
  python test.py dset=campaign checkpoint={folder}/{best} hydra.run.dir={folder}/test
continue the campaign there from the last weights, discriminator included:
  python train.py recipe=cpu_campaign continue_from={folder}/last.pt adversarial_start=0 \\
      discriminator_warmup=0 hydra.run.dir={folder}/cpu""")
EOF
