"""Checkpoints: the project's safe format round-trips; the authors' release files import
through the allow-list unpickler and reproduce the golden output; tampered or truncated files
are refused without running anything."""

from __future__ import annotations

import io
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from aeromamba.checkpoint import (
    CheckpointError,
    build_discriminator,
    import_official,
    load_checkpoint,
    load_generator,
    model_package,
    save_checkpoint,
)
from aeromamba.models import make_discriminator, make_generator
from tests.conftest import golden_input

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def release(fixtures):
    return fixtures / "official_checkpoint"


@pytest.mark.parametrize("name", ["checkpoint.th", "generator_best.th"])
def test_release_file_reproduces_golden_output(release, name):
    model = load_generator(release / name)
    assert not model.training
    with torch.no_grad():
        out = model(golden_input().float()).squeeze().double().numpy()
    golden = np.load(release / "golden_output.npy")
    assert np.abs(out - golden).max() < 1e-4


def test_release_configuration_is_recovered(release):
    package = load_checkpoint(release / "checkpoint.th")
    kwargs = package["generator"]["kwargs"]
    assert kwargs["channels"] == 8 and kwargs["strides"] == [4, 4, 2, 2]
    assert kwargs["mamba_executed"] is False  # the release constructs Mamba, never calls it
    assert package["config"]["experiment"]["aero"]["channels"] == 8
    assert package["history"] and package["epoch"] == len(package["history"])
    disc = build_discriminator(package)
    assert len(disc(torch.randn(1, 1, 4096))) == 3
    assert set(package["optimizers"]) == {"generator", "discriminator"}


def test_import_script_writes_safe_checkpoint(release, tmp_path):
    out = tmp_path / "converted.pt"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "import_official.py"),
            str(release / "checkpoint.th"),
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    package = torch.load(out, weights_only=True)  # plain containers and tensors only
    assert package["format"] == "aeromamba"
    reloaded = load_generator(out)
    direct = load_generator(release / "checkpoint.th")
    x = golden_input().float()
    with torch.no_grad():
        assert torch.equal(reloaded(x), direct(x))


def test_project_checkpoint_round_trip(tmp_path):
    model = make_generator("aeromamba", channels=8)
    disc = make_discriminator(ndf=4, n_layers=2)
    path = tmp_path / "run" / "checkpoint.pt"
    save_checkpoint(
        path,
        {
            "generator": model_package(model),
            "discriminator": model_package(disc),
            "config": {"experiment": {"name": "aeromamba"}},
        },
    )
    assert [p.name for p in path.parent.iterdir()] == ["checkpoint.pt"]  # no temporary left
    loaded = load_generator(path)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    x = torch.randn(1, 1, 3000)
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))


def _tampered_release(src: Path, dest: Path) -> None:
    """Copy a release file, replacing its pickle with one that calls os.system."""

    class Evil:
        def __reduce__(self):
            return (__import__("os").system, ("touch " + str(dest.parent / "PWNED"),))

    payload = pickle.dumps({"class": Evil(), "src.models.aero": 1}, protocol=2)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith("data.pkl"):
                data = payload
            zout.writestr(item, data)


def test_tampered_pickle_is_refused_without_running(release, tmp_path):
    bad = tmp_path / "evil.th"
    _tampered_release(release / "generator_best.th", bad)
    with pytest.raises(CheckpointError, match=r"posix\.system|os\.system|nt\.system"):
        load_generator(bad)
    assert not (tmp_path / "PWNED").exists()


def test_foreign_pickle_in_project_format_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("should not run",))

    path = tmp_path / "evil.pt"
    torch.save({"format": "aeromamba", "evil": Evil()}, path)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)


def test_truncated_checkpoint_is_reported(tmp_path):
    model = make_generator("aeromamba", channels=8)
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"generator": model_package(model)})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nope.pt")
    other = tmp_path / "other.pt"
    torch.save({"state": {}}, other)
    with pytest.raises(CheckpointError, match="not an AEROMamba checkpoint"):
        load_checkpoint(other)
    buffer = io.BytesIO()
    torch.save({"format": "aeromamba"}, buffer)
    with pytest.raises(CheckpointError, match="not a release checkpoint"):
        import_official(other, tmp_path / "x.pt")


def test_a_folder_is_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="is a folder, not a checkpoint file"):
        load_checkpoint(tmp_path)


def test_truncated_release_file_is_reported_as_truncated(release, tmp_path):
    cut = tmp_path / "cut.th"
    data = (release / "generator_best.th").read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    for load in (load_checkpoint, lambda path: import_official(path, tmp_path / "out.pt")):
        with pytest.raises(CheckpointError, match="cut.th: truncated or corrupt"):
            load(cut)
    assert not (tmp_path / "out.pt").exists()


def test_import_never_overwrites_its_source(release, tmp_path):
    source = tmp_path / "generator_best.th"
    source.write_bytes((release / "generator_best.th").read_bytes())
    before = source.read_bytes()
    (tmp_path / "sub").mkdir()
    for dest in (source, tmp_path / "sub" / ".." / source.name):
        with pytest.raises(CheckpointError, match="would overwrite the release file"):
            import_official(source, dest)
    assert source.read_bytes() == before
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "import_official.py"), str(source), str(source)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"error: {source}: the output would overwrite the release file"
    with pytest.raises(CheckpointError, match="would overwrite the release file"):
        import_official(source, source, overwrite=True)
    assert source.read_bytes() == before


def test_import_keeps_an_existing_destination_unless_told(release, tmp_path):
    dest = tmp_path / "converted.pt"
    dest.write_bytes(b"precious")
    with pytest.raises(CheckpointError, match="exists"):
        import_official(release / "generator_best.th", dest)
    assert dest.read_bytes() == b"precious"
    script = [sys.executable, str(ROOT / "scripts" / "import_official.py")]
    args = [str(release / "generator_best.th"), str(dest)]
    kept = subprocess.run([*script, *args], capture_output=True, text=True, check=False)
    assert kept.returncode == 2 and "--overwrite" in kept.stderr
    assert dest.read_bytes() == b"precious"
    replaced = subprocess.run(
        [*script, *args, "--overwrite"], capture_output=True, text=True, check=False
    )
    assert replaced.returncode == 0, replaced.stderr
    assert load_checkpoint(dest)["format"] == "aeromamba"


def test_import_into_a_folder_or_under_a_file_is_one_line(release, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    script = [sys.executable, str(ROOT / "scripts" / "import_official.py")]
    for dest, reason in [(tmp_path, "is a folder"), (blocker / "out.pt", "Not a directory")]:
        result = subprocess.run(
            [*script, str(release / "generator_best.th"), str(dest)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and reason in result.stderr
