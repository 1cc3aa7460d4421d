"""Upsample recordings to 44.1 kHz: `python predict.py input=PATH output=DIR [checkpoint=PATH]`.

The research workflow's form of the `aeromamba` command (`aeromamba.command.upsample_paths`
does the work of both): Hydra `key=value` settings (conf/predict.yaml), the bundled model unless
`checkpoint=` names another. With no input, the bundled example (examples/example_11k.wav) is
upsampled and compared with its 44.1 kHz reference (LSD of the output and of plain soxr
resampling). A bad option or file
ends with one line `error: ...` (status 2); Ctrl-C and SIGTERM remove the output being written
(status 130, 143); status 1 when some files failed (each listed as FAILED).
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from aeromamba.cli import entry_point
from aeromamba.errors import UsageError

ROOT = Path(__file__).resolve().parent
EXAMPLE = ROOT / "examples" / "example_11k.wav"
EXAMPLE_REFERENCE = ROOT / "examples" / "example_44k.wav"

log = logging.getLogger("aeromamba.predict")
NULLABLE = {"band_cap"}  # numeric options whose null means "the checkpoint's"


def check_option_types(cfg: DictConfig) -> None:
    """UsageError for an option whose value is not of its default's kind: true or false for a
    boolean (`keep_lowband=maybe` is neither), a whole number for an integer, a number for a
    number, text for text. Options whose default is null are checked where they are used."""
    defaults = OmegaConf.load(ROOT / "conf" / "predict.yaml")
    for key, default in defaults.items():
        value = cfg.get(key)
        if key in ("defaults", "hydra") or default is None or (value is None and key in NULLABLE):
            continue
        if isinstance(default, bool):
            ok, kind = isinstance(value, bool), "true or false"
        elif isinstance(default, int):
            ok, kind = isinstance(value, int) and not isinstance(value, bool), "a whole number"
        elif isinstance(default, float):
            ok, kind = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
        else:
            ok, kind = isinstance(value, str), "text"
        if not ok:
            raise UsageError(f"{key}={value}: must be {kind}")


def compare_with_reference(output: Path, source: Path, reference: Path) -> None:
    """Print LSD of the output and of soxr resampling of the input against the reference."""
    from aeromamba.audio import read_audio, resample
    from aeromamba.metrics.lsd import lsd

    ref, ref_sr = read_audio(reference)
    out, _ = read_audio(output)
    low, low_sr = read_audio(source)
    plain = resample(low, low_sr, ref_sr)
    n = min(ref.shape[-1], out.shape[-1], plain.shape[-1])
    ref = ref.mean(axis=0)[:n]
    print(
        f"LSD vs {reference.name}: model {float(lsd(out.mean(axis=0)[:n], ref)):.3f}, "
        f"soxr resampling {float(lsd(plain.mean(axis=0)[:n], ref)):.3f} (lower is better)"
    )


@hydra.main(config_path="conf", config_name="predict", version_base="1.3")
@entry_point
def main(cfg: DictConfig) -> int:
    from aeromamba.command import upsample_paths
    from aeromamba.inference import output_path

    check_option_types(cfg)
    example = cfg.input is None
    source = EXAMPLE if example else Path(cfg.input)
    settings = OmegaConf.to_container(cfg, resolve=True)
    if example:
        settings |= {"overwrite": True, "spectrogram": True, "reference": EXAMPLE_REFERENCE}
    summary = upsample_paths([(source, Path(cfg.output))], settings)
    print(summary.report())
    if example and summary.done:
        target = output_path(source, source, Path(cfg.output), f".{cfg.format}")
        print(f"wrote {target} and {target.with_suffix('.png')}")
        compare_with_reference(target, source, EXAMPLE_REFERENCE)
    return 1 if summary.failed else 0


if __name__ == "__main__":
    main()
