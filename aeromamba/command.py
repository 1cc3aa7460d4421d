"""The `aeromamba` command (also `python -m aeromamba`): upsample files and folders to 44.1 kHz.

    aeromamba INPUT... [-o OUT] [--chunk S] [--device D] [--format flac] ...

A file goes to OUT/NAME.FORMAT, a folder's files to OUT/FOLDER/ (same layout). The model is
the one bundled in the package unless `--checkpoint` names another. `upsample_paths` is the one
implementation behind this command and `predict.py` (its `key=value` settings have the same
names). A bad option or file ends with one line `error: ...` (status 2); status 1 when some
files failed (each listed as FAILED).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from aeromamba import PRETRAINED, __version__
from aeromamba.cli import DEVICES, device_option, entry_point
from aeromamba.errors import UsageError
from aeromamba.inference import Summary, output_path
from aeromamba.options import MIN_CHUNK, InferenceOptions

DEFAULT_OUTPUT = Path("upsampled")
DEFAULT_SETTINGS: dict[str, Any] = {  # predict's settings besides the inference options
    "checkpoint": None,
    "device": "auto",
    "threads": None,
    "keep_freed_memory": True,
    "compile": False,
    "overwrite": False,
    "spectrogram": False,
    "reference": None,
    "format": "wav",
    "subtype": None,
}


def upsample_paths(jobs: Sequence[tuple[Path, Path]], settings: Mapping[str, Any]) -> Summary:
    """Upsample each (input file or folder, output folder) of `jobs` with one model, as
    `aeromamba.inference.predict_files` does, and return the summary of them all.

    `settings` holds predict's options by name (`DEFAULT_SETTINGS` and the `InferenceOptions`
    fields; band_cap None = the checkpoint's, "off" = none); missing ones take their defaults.
    Every option is checked (UsageError) before the model loads."""
    from aeromamba.devices import configure_cpu
    from aeromamba.enhance import try_compile
    from aeromamba.inference import predict_files
    from aeromamba.options import load_model

    settings = {**DEFAULT_SETTINGS, **settings}
    try:
        configure_cpu(settings["threads"], settings["keep_freed_memory"])
    except ValueError as err:  # threads
        raise UsageError(str(err)) from err
    InferenceOptions.from_config(None, settings)
    device = device_option(settings["device"])
    model = load_model(settings["checkpoint"] or PRETRAINED, device)
    options = InferenceOptions.from_config(model, settings)
    if settings["compile"]:
        model = try_compile(model, options.chunk)
    summary = Summary()
    for source, output in jobs:
        part = predict_files(
            model,
            source,
            output,
            overwrite=settings["overwrite"],
            spectrogram=settings["spectrogram"],
            reference=settings["reference"],
            suffix=f".{settings['format']}",
            options=options,
            subtype=settings["subtype"],
        )
        _add(summary, part)
    return summary


def _add(total: Summary, part: Summary) -> None:
    """Add the files and times of `part` to `total`."""
    for field in dataclasses.fields(Summary):
        setattr(total, field.name, getattr(total, field.name) + getattr(part, field.name))


def plan_jobs(inputs: Sequence[Path], output: Path, suffix: str) -> list[tuple[Path, Path]]:
    """(input, output folder) of each input: a file into `output`, a folder into
    `output`/its name. UsageError when two inputs would write the same file or folder."""
    jobs, seen = [], {}
    for source in inputs:
        if source.is_dir():
            folder = output / source.resolve().name
            job, target = (source, folder), folder
        else:
            job, target = (source, output), output_path(source, source, output, suffix)
        if target in seen:
            raise UsageError(
                f"{seen[target]} and {source} would both be written to {target}; "
                f"upsample them in separate runs or rename one"
            )
        seen[target] = source
        jobs.append(job)
    return jobs


class _Parser(argparse.ArgumentParser):
    """An argument parser whose mistakes are UsageErrors (one line from `entry_point`)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see aeromamba --help)")


def _band_cap(text: str) -> float | str:
    """`--band-cap`'s value: a number of dB or `off`."""
    if text == "off":
        return text
    try:
        return float(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a number of dB nor off") from err


def build_parser() -> argparse.ArgumentParser:
    """The command's arguments; each option's default is predict's."""
    defaults = InferenceOptions()
    parser = _Parser(
        prog="aeromamba",
        description="Upsample music to 44.1 kHz with AEROMamba (the model bundled in the "
        "package unless --checkpoint names another).",
        epilog="A file goes to OUT/NAME.FORMAT, a folder's audio files to OUT/FOLDER/ with the "
        "same layout; existing outputs are skipped unless --overwrite.",
    )
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="files or folders")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        metavar="OUT",
        help=f"output folder (default: {DEFAULT_OUTPUT})",
    )
    parser.add_argument("--version", action="version", version=f"aeromamba {__version__}")
    model = parser.add_argument_group("model and processing")
    model.add_argument(
        "--checkpoint",
        type=Path,
        metavar="PATH",
        help="a project checkpoint or an authors' release file (default: the bundled model)",
    )
    model.add_argument(
        "--chunk",
        type=float,
        default=defaults.chunk,
        metavar="S",
        help=f"seconds of 11.025 kHz input per model pass, at least {MIN_CHUNK}; memory grows "
        "with it (default: %(default)s)",
    )
    model.add_argument(
        "--overlap",
        type=float,
        default=defaults.overlap,
        metavar="S",
        help="seconds of cross-fade between chunks, at most half a chunk (default: %(default)s)",
    )
    model.add_argument(
        "--batch-size",
        type=int,
        default=defaults.batch_size,
        metavar="N",
        help="rows per forward pass: max(1, N // channels) chunks of every channel "
        "(default: %(default)s)",
    )
    model.add_argument(
        "--keep-band",
        action=argparse.BooleanOptionalAction,
        default=defaults.keep_band,
        help="keep each input below where its content stops (an MP3's lowpass, a 22.05 kHz "
        "file's 11 kHz) and generate only the band above (default: on)",
    )
    model.add_argument(
        "--keep-lowband",
        action=argparse.BooleanOptionalAction,
        default=defaults.keep_lowband,
        help="with --no-keep-band: take the band below 5 kHz from the input; --no-keep-band "
        "--no-keep-lowband is the network's whole band, the paper's protocol (default: on)",
    )
    model.add_argument(
        "--band-cap",
        type=_band_cap,
        metavar="DB",
        help="attenuate the generated band where it stands more than DB above the input's "
        "top-octave slope extended, or off (default: the checkpoint's; the bundled model: none)",
    )
    model.add_argument(
        "--amp",
        choices=("none", "bf16", "fp16"),
        default=defaults.amp,
        help="autocast: on CUDA, or bf16 on a CPU with AVX512-BF16/AMX (default: %(default)s)",
    )
    run = parser.add_argument_group("machine")
    run.add_argument(
        "--device",
        default=DEFAULT_SETTINGS["device"],
        help=f"{DEVICES}; auto = cuda, else mps, else cpu (default: %(default)s)",
    )
    run.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="CPU threads (default: one per core this process may use)",
    )
    files = parser.add_argument_group("output files")
    files.add_argument(
        "--format",
        default=DEFAULT_SETTINGS["format"],
        help="output container: wav, flac, ogg, ... (default: %(default)s)",
    )
    files.add_argument(
        "--subtype",
        metavar="NAME",
        help="soundfile subtype: PCM_16, PCM_24, FLOAT, ... (default: the input's where the "
        "format holds it, else the format's own)",
    )
    files.add_argument("--overwrite", action="store_true", help="redo outputs that exist")
    files.add_argument(
        "--spectrogram",
        action="store_true",
        help="also write a PNG per file: the input's and the output's spectrograms",
    )
    return parser


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    """`upsample_paths` settings from parsed arguments (inputs and output excluded)."""
    return {key: value for key, value in vars(args).items() if key not in ("inputs", "output")}


@entry_point
def main(argv: Sequence[str] | None = None) -> int:
    """Run the command on `argv` (default: sys.argv[1:]); the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    jobs = plan_jobs(args.inputs, args.output, f".{args.format}")
    summary = upsample_paths(jobs, settings_of(args))
    print(summary.report(redo="--overwrite"))
    return 1 if summary.failed else 0
