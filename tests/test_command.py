"""The `aeromamba` command: ordinary flags named as predict's settings, one line per mistake,
files and folders with any name, the bundled model by default."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from omegaconf import OmegaConf

import aeromamba
from aeromamba.checkpoint import model_package, save_checkpoint
from aeromamba.command import build_parser, main, plan_jobs, settings_of
from aeromamba.data.synthetic import music_clip
from aeromamba.errors import UsageError
from aeromamba.models import make_generator
from aeromamba.options import InferenceOptions

ROOT = Path(__file__).resolve().parents[1]
NAME = "My Song, live [2001].wav"


def parse(*argv: str) -> dict:
    return settings_of(build_parser().parse_args([*argv, "in.wav"]))


def test_defaults_are_predicts():
    settings = parse()
    options = InferenceOptions.from_config(None, settings)
    assert options == InferenceOptions()
    predict = OmegaConf.load(ROOT / "conf" / "predict.yaml")
    assert set(settings) <= set(predict), "every flag is one of predict's settings"
    same = ("device", "format", "subtype", "overwrite", "spectrogram", "band_cap", "threads")
    assert {key: settings[key] for key in same} == {key: predict[key] for key in same}


def test_flags_set_the_options():
    settings = parse(
        "--chunk", "4", "--overlap=0.5", "--batch-size", "2", "--no-keep-band",
        "--no-keep-lowband", "--band-cap", "off", "--amp", "bf16", "--format", "flac",
        "--overwrite", "--spectrogram", "--checkpoint", "x.pt", "--device", "cpu",
    )  # fmt: skip
    options = InferenceOptions.from_config(None, settings)
    assert options == InferenceOptions(4.0, 0.5, 2, False, False, None, "bf16")
    assert settings["format"] == "flac" and settings["overwrite"] and settings["spectrogram"]
    assert settings["checkpoint"] == Path("x.pt") and settings["device"] == "cpu"
    assert InferenceOptions.from_config(None, parse("--band-cap", "3")).band_cap == 3.0


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--chunck", "5", "a.wav"], "unrecognized arguments: --chunck"),
        (["--chunk", "abc", "a.wav"], "--chunk: invalid float value"),
        (["--band-cap", "loud", "a.wav"], "neither a number of dB nor off"),
        (["--amp", "fp8", "a.wav"], "--amp: invalid choice"),
        ([], "required: INPUT"),
    ],
)
def test_a_mistake_is_one_line_naming_the_flag(argv, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err


def test_files_go_into_the_output_and_folders_under_their_name(tmp_path):
    song, folder = tmp_path / NAME, tmp_path / "album"
    song.touch()
    folder.mkdir()
    out = tmp_path / "out"
    assert plan_jobs([song, folder], out, ".flac") == [(song, out), (folder, out / "album")]
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / NAME).touch()
    with pytest.raises(UsageError, match=r"would both be written to .*My Song, live \[2001\]"):
        plan_jobs([song, tmp_path / "b" / NAME], out, ".wav")


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "small.pt"
    save_checkpoint(path, {"generator": model_package(make_generator(channels=8).eval())})
    return path


def test_a_name_with_commas_spaces_and_brackets_just_works(tmp_path, small_checkpoint, capsys):
    sf.write(tmp_path / NAME, music_clip(1.0, 11025, seed=1), 11025)
    (tmp_path / "album").mkdir()
    sf.write(tmp_path / "album" / "a [b], c.flac", music_clip(1.0, 22050, seed=2), 22050)
    argv = [str(tmp_path / NAME), str(tmp_path / "album"), "-o", str(tmp_path / "out")]
    assert main([*argv, "--checkpoint", str(small_checkpoint), "--threads", "1"]) == 0
    assert "2 done" in capsys.readouterr().out
    for written in (tmp_path / "out" / NAME, tmp_path / "out" / "album" / "a [b], c.wav"):
        info = sf.info(written)
        assert (info.samplerate, info.frames) == (44100, 44100)
    assert main([*argv, "--checkpoint", str(small_checkpoint), "--threads", "1"]) == 0
    again = capsys.readouterr().out
    assert "0 done, 2 skipped (output exists; --overwrite to redo)" in again, again


def test_upsample_without_a_model_uses_the_bundled_one():
    torch.set_num_threads(1)
    audio = music_clip(1.0, 11025, seed=4)
    out, sr = aeromamba.upsample(audio, 11025)
    bundled, _ = aeromamba.upsample(audio, 11025, aeromamba.load_pretrained())
    assert sr == 44100 and out.shape == (44100,) and np.isfinite(out).all()
    np.testing.assert_array_equal(out, bundled)
    assert aeromamba.load_pretrained().postprocessing == {}, "the bundled model sets no cap"
