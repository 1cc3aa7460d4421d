"""One exception tree: every expected failure is an `AeromambaError` through single
inheritance; what the user can fix is a `UsageError` (status 2), a run that stopped is not
(status 1); both end a command with one line."""

from __future__ import annotations

import logging
import sys

import pytest
import soundfile as sf

from aeromamba import errors
from aeromamba.audio import AudioError
from aeromamba.checkpoint import CheckpointError
from aeromamba.cli import entry_point, metrics_option
from aeromamba.data.dataset import ManifestError, NonFiniteAudioError
from aeromamba.data.synthetic import music_clip
from aeromamba.options import OptionError
from aeromamba.training.config import ConfigError
from aeromamba.training.distributed import RunDirectoryBusy
from aeromamba.training.solver import NonFiniteLossError
from aeromamba_corpora import recordings
from aeromamba_corpora.mix import MixError
from aeromamba_corpora.rendered import catalogue
from aeromamba_corpora.rendered.render import SetupError
from aeromamba_corpora.rendered.score import PieceError

USAGE = (
    AudioError,
    CheckpointError,
    OptionError,
    ConfigError,
    ManifestError,
    NonFiniteAudioError,
    RunDirectoryBusy,
    errors.CorpusError,
)
CORPUS = (errors.CatalogueError, MixError, SetupError, PieceError)


@pytest.mark.parametrize("cls", [*USAGE, *CORPUS, NonFiniteLossError])
def test_each_error_has_one_base_in_the_tree(cls):
    assert len(cls.__bases__) == 1, cls.__bases__
    assert issubclass(cls, errors.AeromambaError)
    assert not issubclass(cls, (ValueError, RuntimeError, FloatingPointError))


@pytest.mark.parametrize("cls", [*USAGE, *CORPUS])
def test_user_fixable_problems_are_usage_errors(cls):
    assert issubclass(cls, errors.UsageError)


@pytest.mark.parametrize("cls", CORPUS)
def test_corpus_builders_raise_corpus_errors(cls):
    assert issubclass(cls, errors.CorpusError)


def test_a_diverged_run_is_not_a_usage_error():
    assert issubclass(NonFiniteLossError, errors.RunError)
    assert not issubclass(NonFiniteLossError, errors.UsageError)


def test_both_catalogues_raise_the_same_error():
    assert recordings.CatalogueError is catalogue.CatalogueError is errors.CatalogueError


@pytest.mark.parametrize(
    "error,status",
    [(OptionError("chunk must be at least 0.5 s"), 2), (NonFiniteLossError("loss is nan"), 1)],
)
def test_entry_point_prints_one_line_with_the_status(capsys, error, status):
    @entry_point
    def main() -> int:
        raise error

    with pytest.raises(SystemExit) as stopped:
        main()
    assert stopped.value.code == status
    assert capsys.readouterr().err == f"error: {error}\n"


def test_scoring_without_visqol_skips_it_in_one_line(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "visqol", None)  # as if not installed
    with caplog.at_level(logging.WARNING, logger="aeromamba"):
        assert metrics_option("lsd,visqol,paqm") == ["lsd", "paqm"]
    (record,) = caplog.records
    assert "ViSQOL skipped" in record.getMessage() and "aeromamba[eval]" in record.getMessage()
    with pytest.raises(errors.UsageError, match=r"visqol is not installed; pip install"):
        metrics_option("visqol")


def test_evaluate_without_visqol_scores_the_other_metrics(tmp_path, monkeypatch, capsys):
    from script_loader import load_script

    monkeypatch.setitem(sys.modules, "visqol", None)
    for folder, seed in (("ref", 1), ("est", 2)):
        (tmp_path / folder).mkdir()
        sf.write(tmp_path / folder / "a.wav", music_clip(2.0, 44100, seed=seed), 44100)
    argv = ["evaluate.py", "--reference", str(tmp_path / "ref"), "--out", str(tmp_path / "out")]
    monkeypatch.setattr(sys, "argv", [*argv, "--estimate", f"x={tmp_path / 'est'}"])
    assert load_script("scripts/evaluate.py").main() == 0
    header = (tmp_path / "out" / "summary.md").read_text().splitlines()[0]
    assert "paqm" in header.lower() and "visqol" not in header.lower(), header
