"""Evaluate checkpoints on a dataset's test excerpts (10 s every 40 s, as the paper):
`python test.py dset=<name> [checkpoint=PATH] [+systems.NAME=PATH] [report=true]`.

Rows: the low-resolution baseline (soxr upsampling of the input) and, for each checkpoint, the
network's whole band and what predict.py writes by default (`outputs=`); columns LSD, LSD-HF,
LSD-LF, ViSQOL, PAQM with 95% confidence intervals and Mann–Whitney U p-values, and a second
table of the generated band against the reference (level error in dB and envelope spread ratio
in 5.5–8, 8–12, 12–16 and 16–20 kHz; `aeromamba.metrics.band_level`), over all excerpts and,
when the test split has groups (kinds of music), for each group. Writes
summary.json, summary_by_group.json, per_item.csv, summary.md (and report.html) into the run
directory. The sample rates are the models'; the prepared corpus must match them.
Options and checkpoints are checked before the data is read or prepared: a bad one ends with
one line `error: ...` (status 2); status 1 when some items or metrics failed.
"""

from __future__ import annotations

from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from aeromamba import PRETRAINED
from aeromamba.cli import device_option, entry_point, metrics_option
from aeromamba.errors import UsageError

DEFAULT_CHECKPOINT = PRETRAINED
# what each `outputs` entry changes in predict's defaults (`InferenceOptions.for_model`, the
# checkpoint's post-processing included): the network's whole band (the paper's protocol), or
# nothing (what predict.py writes)
OUTPUTS = {
    "network": {"keep_band": False, "keep_lowband": False, "band_cap": None},
    "predict": {},
}


@hydra.main(config_path="conf", config_name="test", version_base="1.3")
@entry_point
def main(cfg: DictConfig) -> int:
    from aeromamba.data import PairedSegments, ensure_prepared
    from aeromamba.devices import configure_cpu
    from aeromamba.enhance import enhance
    from aeromamba.evaluation import evaluate_excerpts
    from aeromamba.options import InferenceOptions, load_model

    try:
        configure_cpu(cfg.threads, cfg.keep_freed_memory)
    except ValueError as err:  # threads=
        raise UsageError(str(err)) from err
    device = device_option(cfg.device)
    InferenceOptions(chunk=cfg.chunk, overlap=cfg.overlap)  # checked before anything loads
    metrics = metrics_option(cfg.metrics)
    unknown = sorted(set(cfg.outputs) - set(OUTPUTS))
    if unknown or not cfg.outputs:
        raise UsageError(f"outputs={list(cfg.outputs)}: choose one or more of {', '.join(OUTPUTS)}")
    paths = {"model": cfg.checkpoint or DEFAULT_CHECKPOINT, **cfg.systems}
    models = {name: load_model(path, device) for name, path in paths.items()}
    rates = {(model.lr_sr, model.hr_sr) for model in models.values()}
    if len(rates) > 1:
        raise UsageError(f"the systems work at different sample rates {sorted(rates)}")
    lr_sr, hr_sr = rates.pop()
    dset = cfg.dset
    ensure_prepared(
        dset.source, dset.root, synthetic_minutes=dset.synthetic_minutes, seed=dset.seed
    )
    data = PairedSegments(
        dset.root, dset.test, dset.test_segment, dset.test_stride, lr_sr, hr_sr, pad=True
    )
    count = len(data) if cfg.max_items is None else min(cfg.max_items, len(data))
    excerpts, groups = [], {}
    for index in range(count):
        name, start = data.describe(index)
        lr, hr = data[index]
        label = f"{name}@{start:g}s"
        excerpts.append((label, lr[0].numpy(), hr[0].numpy()))
        groups[label] = data.group(index)
    systems = {}
    for name, model in models.items():
        for output in cfg.outputs:
            options = InferenceOptions.for_model(
                model, chunk=cfg.chunk, overlap=cfg.overlap, **OUTPUTS[output]
            )

            def run(lr, model=model, options=options):
                return enhance(model, torch.from_numpy(lr)[None].to(device), options)[0].numpy()

            label = name if len(cfg.outputs) == 1 else f"{name}, {output}"
            systems[label] = run
    out = Path(HydraConfig.get().runtime.output_dir)
    evaluation = evaluate_excerpts(
        excerpts,
        systems,
        out,
        metrics,
        cfg.report,
        cfg.report_items,
        lr_sr,
        hr_sr,
        groups=groups,
    )
    print((out / "summary.md").read_text())
    print(f"results in {out}")
    return 1 if evaluation.failures else 0


if __name__ == "__main__":
    main()
