"""The command-line tools end on a user's mistake with one line `error: ...` on stderr and a
non-zero status, never a traceback; Ctrl-C and SIGTERM leave no partial output; nothing the
user did not ask for is overwritten or dropped."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from aeromamba.checkpoint import model_package, save_checkpoint
from aeromamba.data.synthetic import music_clip
from aeromamba.models import make_generator

ROOT = Path(__file__).resolve().parents[1]
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


def run(script: str, *args: object, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / script), *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        env=ONE_THREAD,
        cwd=cwd,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> str:
    """The run failed with status 2 and a single `error:` line naming every needle."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert result.returncode == 2, (result.returncode, result.stderr)
    return lines[0]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "small.pt"
    save_checkpoint(path, {"generator": model_package(make_generator(channels=8).eval())})
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "clip.wav"
    sf.write(path, music_clip(2.0, 22050, seed=1), 22050)
    return path


# --- predict.py ------------------------------------------------------------------------------


def predict(checkpoint: Path, *args: object) -> subprocess.CompletedProcess:
    return run("predict.py", f"checkpoint={checkpoint}", "threads=1", *args)


@pytest.mark.parametrize(
    "device,reason", [("foo", "not a device name"), ("cuda:99", "not available here")]
)
def test_predict_unknown_or_absent_device(checkpoint, clip, tmp_path, device, reason):
    result = predict(checkpoint, f"input={clip}", f"output={tmp_path}", f"device={device}")
    assert_one_line_error(result, f"device={device}", reason)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("chunk,overlap", [(0.001, 0.0), (10.0, -1.0)])
def test_predict_refuses_chunks_below_the_bound_at_once(checkpoint, clip, tmp_path, chunk, overlap):
    start = time.monotonic()
    result = predict(
        checkpoint, f"input={clip}", f"output={tmp_path}", f"chunk={chunk}", f"overlap={overlap}"
    )
    assert_one_line_error(result, "chunk" if chunk < 0.5 else "overlap", "at least")
    assert time.monotonic() - start < 60  # it used to run for half an hour
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "option,needles",
    [
        ("keep_lowband=maybe", ["keep_lowband=maybe", "true or false"]),
        ("overwrite=1", ["overwrite=1", "true or false"]),
        ("batch_size=abc", ["batch_size=abc", "whole number"]),
        ("batch_size=0", ["batch_size", "at least 1"]),
        ("batch_size=-3", ["batch_size", "at least 1"]),
    ],
)
def test_predict_options_are_typed_strictly(checkpoint, clip, tmp_path, option, needles):
    result = predict(checkpoint, f"input={clip}", f"output={tmp_path}", option)
    assert_one_line_error(result, *needles)
    assert not any(tmp_path.iterdir())


def test_predict_refuses_an_input_that_is_no_regular_file(checkpoint, tmp_path):
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    result = predict(checkpoint, f"input={fifo}", f"output={tmp_path / 'out'}")
    assert_one_line_error(result, str(fifo), "not a regular file", "FIFO")
    assert not (tmp_path / "out").exists()


def test_predict_checkpoint_that_is_a_folder(tmp_path, clip):
    result = run(
        "predict.py", f"input={clip}", f"output={tmp_path / 'out'}", f"checkpoint={tmp_path}"
    )
    assert_one_line_error(result, str(tmp_path), "is a folder, not a checkpoint file")


def _being_written(out: Path) -> bool:
    """Whether an output under `out` is being written: its temporary holds data (the audio
    header at least). The instant it exists is too early: atomic_path creates it before
    arming the cleanup that removes it, and a signal there left it behind."""
    for path in out.glob(".*.tmp"):
        try:
            if path.stat().st_size:
                return True
        except FileNotFoundError:  # removed between the listing and the look
            pass
    return False


def _interrupt(checkpoint: Path, tmp_path: Path, signum: int) -> subprocess.CompletedProcess:
    """Start predict.py on a long file, send `signum` once its output is being written."""
    long = tmp_path / "long.wav"
    sf.write(long, np.tile(music_clip(10.0, 11025, seed=2), 20), 11025)
    out = tmp_path / "out"
    process = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "predict.py"),
            f"input={long}",
            f"output={out}",
            f"checkpoint={checkpoint}",
            "threads=1",
            "device=cpu",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ONE_THREAD,
    )
    deadline = time.monotonic() + 120
    while not _being_written(out) and process.poll() is None:
        assert time.monotonic() < deadline, "no temporary output appeared"
        time.sleep(0.05)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.mark.parametrize(
    "signum,status,word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")]
)
def test_predict_interrupted_leaves_no_partial_output(checkpoint, tmp_path, signum, status, word):
    result = _interrupt(checkpoint, tmp_path, signum)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == status
    lines = result.stderr.splitlines()  # tqdm's progress bar comes before
    assert lines[-1] == f"error: {word}" and sum(line.startswith("error") for line in lines) == 1
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]


def test_device_option_names_the_devices_there_are(monkeypatch):
    from aeromamba.cli import device_option
    from aeromamba.errors import UsageError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert device_option("cuda:0") == torch.device("cuda:0")
    assert device_option("cpu") == torch.device("cpu")
    with pytest.raises(UsageError, match=r"^device=cuda:1: not available here \(1 CUDA devices\)"):
        device_option("cuda:1")
    with pytest.raises(UsageError, match="^device=meta: not supported"):
        device_option("meta")


# --- test.py ---------------------------------------------------------------------------------


def evaluate_checkpoints(tmp_path: Path, *args: object) -> subprocess.CompletedProcess:
    """test.py on a corpus that is not there: options must be refused before the data."""
    return run(
        "test.py",
        "dset=folder",
        f"dset.root={tmp_path / 'none'}",
        f"dset.source={tmp_path / 'nosource'}",
        "threads=1",
        *args,
        cwd=tmp_path,
    )


@pytest.mark.parametrize(
    "option,needles",
    [
        ("device=foo", ["device=foo", "not a device name"]),
        ("chunk=0.01", ["chunk", "at least"]),
        ("metrics=[lsd,foo]", ["metrics", "unknown foo"]),
        ("checkpoint=.", ["is a folder, not a checkpoint file"]),
        ("device=cpu", ["not a prepared corpus"]),  # all options fine: the data is missing
    ],
)
def test_test_py_errors_are_one_line(checkpoint, tmp_path, option, needles):
    result = evaluate_checkpoints(tmp_path, f"checkpoint={checkpoint}", option)
    assert_one_line_error(result, *needles)


def usage_overrides(script: str) -> list[str]:
    """The `key=value` overrides of a script's usage line (its docstring's first line), the
    placeholders filled in."""
    module = ROOT / script
    usage = re.search(r"`python \S+ ([^`]*)`", module.read_text()).group(1)
    fill = {"<name>": "synthetic", "PATH": "x.pt", "NAME": "other", "DIR": "out"}
    overrides = []
    for token in usage.replace("[", " ").replace("]", " ").split():
        if "=" in token and "..." not in token:
            for placeholder, value in fill.items():
                token = token.replace(placeholder, value)
            overrides.append(token)
    return overrides


@pytest.mark.parametrize("script,config", [("test.py", "test"), ("predict.py", "predict")])
def test_usage_lines_are_overrides_hydra_accepts(script, config):
    from hydra import compose, initialize_config_dir

    overrides = usage_overrides(script)
    assert overrides  # the usage line shows some
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config, overrides=overrides)
    for override in overrides:
        key, value = override.lstrip("+").split("=", 1)
        node = cfg
        for part in key.split("."):
            node = node[part]
        assert str(node).lower() == value or key == "dset"


# --- scripts/evaluate.py ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("eval")
    reference = music_clip(1.0, 44100, seed=3)
    for name, gain in [("ref", 1.0), ("a", 0.9), ("b", 0.8)]:
        (root / name).mkdir()
        sf.write(root / name / "x.wav", gain * reference, 44100)
    return {name: root / name for name in ("ref", "a", "b")}


def evaluate(folders: dict[str, Path], *args: object) -> subprocess.CompletedProcess:
    return run("scripts/evaluate.py", "--reference", folders["ref"], *args)


@pytest.mark.parametrize(
    "argv,needles",
    [
        (["--estimate", "x={a}", "--estimate", "x={b}"], ["--estimate", "x", "twice"]),
        (["--estimate", "{a}", "--estimate", "{a}"], ["--estimate", "a", "twice"]),
        (["--estimate", "low resolution={a}", "--lowres", "{b}"], ["low resolution", "twice"]),
    ],
)
def test_evaluate_refuses_a_system_name_twice(folders, tmp_path, argv, needles):
    args = [arg.format(**folders) for arg in argv]
    result = evaluate(folders, *args, "--metrics", "lsd", "--out", tmp_path / "out")
    assert_one_line_error(result, *needles)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "metrics,needles",
    [(",", ["metrics", "none given"]), ("lsd,foo", ["unknown foo"]), ("lsd,lsd", ["twice"])],
)
def test_evaluate_bad_metrics(folders, tmp_path, metrics, needles):
    result = evaluate(
        folders, "--estimate", folders["a"], "--metrics", metrics, "--out", tmp_path / "out"
    )
    assert_one_line_error(result, *needles)
    assert not (tmp_path / "out").exists()


def test_evaluate_missing_reference_and_out_a_file(folders, tmp_path):
    result = run(
        "scripts/evaluate.py",
        "--reference",
        tmp_path / "nope",
        "--estimate",
        folders["a"],
        "--metrics",
        "lsd",
        "--out",
        tmp_path / "out",
    )
    assert_one_line_error(result, str(tmp_path / "nope"))
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = evaluate(folders, "--estimate", folders["a"], "--metrics", "lsd", "--out", blocker)
    assert_one_line_error(result, str(blocker), "not a folder")
    result = evaluate(
        folders, "--estimate", tmp_path / "absent", "--metrics", "lsd", "--out", tmp_path / "o"
    )
    assert_one_line_error(result, str(tmp_path / "absent"))


@pytest.mark.parametrize("inside", ["ref", "a"])
def test_evaluate_refuses_out_inside_a_scored_folder(folders, inside):
    out = folders[inside] / "report"
    result = evaluate(folders, "--estimate", folders["a"], "--metrics", "lsd", "--out", out)
    assert_one_line_error(result, str(out), "inside", str(folders[inside]))
    assert not out.exists()


def test_evaluate_two_names_two_rows(folders, tmp_path):
    result = evaluate(
        folders,
        "--estimate",
        f"first={folders['a']}",
        "--estimate",
        f"second={folders['b']}",
        "--metrics",
        "lsd",
        "--out",
        tmp_path / "out",
    )
    assert result.returncode == 0, result.stderr
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "first" in summary and "second" in summary


# --- scripts/import_official.py --------------------------------------------------------------


def test_import_official_errors_are_one_line(checkpoint, tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    blocker = tmp_path / "file"
    blocker.write_text("")
    release = tmp_path / "release.th"
    release.write_bytes(b"PK\x03\x04" + bytes(100))  # a zip's start, cut short
    for args, needles in [
        ((folder, tmp_path / "out.pt"), [str(folder), "is a folder"]),
        ((tmp_path / "none.th", tmp_path / "out.pt"), ["none.th", "no such checkpoint file"]),
        ((release, tmp_path / "out.pt"), ["release.th", "truncated or corrupt"]),
        ((checkpoint, tmp_path / "out.pt"), ["not a release checkpoint"]),
    ]:
        assert_one_line_error(run("scripts/import_official.py", *args), *needles)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder", "release.th"]
