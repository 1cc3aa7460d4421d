"""A prepared corpus's manifests are not trusted: paths must stay inside the corpus, rates and
lengths must match the files' headers, missing keys and damaged JSON are one line naming the
manifest and the entry, a damaged segment cache is measured anew, and non-finite audio names
its file."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from torch.utils.data import DataLoader

from aeromamba.data import PairedSegments, music_clip, prepare_corpus
from aeromamba.errors import UsageError


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A prepared corpus of two 2-s files, both in train."""
    root = tmp_path_factory.mktemp("corpus")
    raw = root / "raw" / "train"
    raw.mkdir(parents=True)
    for index in range(2):
        sf.write(raw / f"song{index}.wav", music_clip(2.0, 44100, seed=index), 44100)
    prepare_corpus(root / "raw", root / "prepared", workers=1, progress=False)
    return root / "prepared"


@pytest.fixture
def corpus(prepared: Path, tmp_path: Path) -> Path:
    """A copy of the prepared corpus, for one test to damage."""
    return Path(shutil.copytree(prepared, tmp_path / "prepared"))


def _edit(corpus: Path, change) -> Path:
    """Apply `change` to train.json's content; returns the manifest's path."""
    path = corpus / "train.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))
    return path


def _refused(corpus: Path, *says: str, **options) -> str:
    with pytest.raises(UsageError) as caught:
        PairedSegments(corpus, "train", segment=1, **options)
    message = str(caught.value)
    assert "\n" not in message and str(corpus / "train.json") in message
    for words in says:
        assert words in message, message
    return message


def _item(key: str, value):
    def change(manifest):
        manifest["items"][1][key] = value

    return change


def test_a_valid_manifest_is_accepted(corpus: Path):
    assert len(PairedSegments(corpus, "train", segment=1)) == 4


@pytest.mark.parametrize("where", ["absolute", "parent", "link"])
def test_paths_outside_the_corpus_are_refused(corpus: Path, tmp_path: Path, where: str):
    outside = tmp_path / "elsewhere.wav"
    sf.write(outside, np.zeros(2 * 44100, np.float32), 44100, subtype="FLOAT")
    if where == "link":
        (corpus / "train" / "hr" / "linked.wav").symlink_to(outside)
    value = {
        "absolute": str(outside),
        "parent": "train/../../elsewhere.wav",
        "link": "train/hr/linked.wav",
    }[where]
    _edit(corpus, _item("hr", value))
    _refused(corpus, "song1", "outside", value)


@pytest.mark.parametrize(
    "key, value, says",
    [
        ("lr_length", 10**12, "lr_length 1000000000000"),
        ("lr_length", 100, "lr_length 100"),
        ("hr_length", 5, "hr_length 5"),
        ("lr_length", "many", "lr_length"),
        ("hr", 3, "hr"),
    ],
)
def test_lengths_that_differ_from_the_files_are_refused(corpus: Path, key, value, says):
    _edit(corpus, _item(key, value))
    _refused(corpus, "song1", says)


def test_a_file_at_another_rate_than_the_manifest_says_is_refused(corpus: Path):
    path = corpus / "train" / "lr" / "song1.wav"
    audio, _ = sf.read(path, dtype="float32")
    sf.write(path, audio, 16000, subtype="FLOAT")
    _refused(corpus, "song1", "16000 Hz", "11025")


def test_a_file_that_is_not_audio_is_refused(corpus: Path):
    (corpus / "train" / "hr" / "song0.wav").write_bytes(b"RIFF and nothing else")
    _refused(corpus, "song0", "hr")


@pytest.mark.parametrize("key", ["lr_sr", "hr_sr", "items"])
def test_a_manifest_missing_a_key_is_one_line(corpus: Path, key: str):
    _edit(corpus, lambda manifest: manifest.pop(key))
    _refused(corpus, key)


@pytest.mark.parametrize("key", ["lr_length", "hr_length", "lr", "name"])
def test_an_item_missing_a_key_is_one_line(corpus: Path, key: str):
    _edit(corpus, lambda manifest: manifest["items"][1].pop(key))
    _refused(corpus, "item 2", key)


def test_a_manifest_at_other_rates_is_one_line(corpus: Path):
    _edit(corpus, lambda manifest: manifest.update(lr_sr=0))
    _refused(corpus, "0")


@pytest.mark.parametrize("content", ["", '{"split": "train", "items": [', "[]", "null"])
def test_a_damaged_manifest_is_one_line(corpus: Path, content: str):
    (corpus / "train.json").write_text(content)
    _refused(corpus, "prepare")


@pytest.mark.parametrize("content", ["", '{"manifest_sha256": "', "[]", '{"filters": 3}'])
def test_a_damaged_segment_cache_is_measured_anew(corpus: Path, content: str):
    fresh = PairedSegments(corpus, "train", segment=1, min_dbfs=-60).index
    cache = corpus / "train.segments.json"
    cache.write_text(content)
    again = PairedSegments(corpus, "train", segment=1, min_dbfs=-60)
    assert again.index == fresh
    assert json.loads(cache.read_text())["filters"]


def _poison(corpus: Path, name: str, seconds: float) -> None:
    path = corpus / "train" / "hr" / f"{name}.wav"
    audio, rate = sf.read(path, dtype="float32")
    audio[round(seconds * rate)] = math.nan
    sf.write(path, audio, rate, subtype="FLOAT")


def _non_finite_error(corpus: Path, read, seconds: float) -> None:
    """`read` of the corpus whose song1 has a NaN at `seconds` names the file and the time."""
    path = corpus / "train" / "hr" / "song1.wav"
    audio, rate = sf.read(path, dtype="float32")
    audio[round(seconds * rate)] = math.nan
    sf.write(path, audio, rate, subtype="FLOAT")
    with pytest.raises(UsageError) as caught:
        read()
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path}: NaN or Inf samples")
    assert f"the first at {seconds:.2f} s" in message


def test_non_finite_audio_is_named_by_the_level_filter(corpus: Path):
    _non_finite_error(corpus, lambda: PairedSegments(corpus, "train", 1, min_dbfs=-60), 1.5)


def test_non_finite_audio_is_named_when_read(corpus: Path):
    data = PairedSegments(corpus, "train", segment=1)
    _non_finite_error(corpus, lambda: [data[index] for index in range(len(data))], 1.25)


def test_non_finite_audio_is_one_line_from_a_loader_worker(corpus: Path):
    data = PairedSegments(corpus, "train", segment=1)
    loader = DataLoader(data, batch_size=1, num_workers=1)
    _non_finite_error(corpus, lambda: list(loader), 0.5)
