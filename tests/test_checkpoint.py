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
    build_generator,
    import_official,
    load_checkpoint,
    load_generator,
    model_package,
    save_checkpoint,
)
from aeromamba.models import make_discriminator, make_generator
from tests.checkpoint_payloads import (
    deflate_bomb,
    fake_release_class,
    hostile_files,
    marker,
    project_package,
    replace_member,
    write_project_checkpoint,
)
from tests.conftest import golden_input, golden_output

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def release(official_release):
    return official_release


@pytest.mark.parametrize("name", ["checkpoint.th", "generator_best.th"])
def test_release_file_reproduces_golden_output(release, name):
    model = load_generator(release / name)
    assert not model.training
    with torch.no_grad():
        out = model(golden_input().float()).squeeze().double().numpy()
    golden = golden_output("official_checkpoint")
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


# --- hostile files ----------------------------------------------------------------------------


def _refusal(load, path: Path) -> str:
    """The message of the CheckpointError that `load(path)` raises: one line naming the file,
    never advising the unsafe load."""
    with pytest.raises(CheckpointError) as caught:
        load(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message, message
    assert "weights_only" not in message, message
    return message


@pytest.fixture(scope="module")
def hostile(release, tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    return folder, hostile_files(folder, release / "generator_best.th")


HOSTILE = [
    "zip",
    "legacy",
    "legacy_nested",
    "raw_pickle",
    "raw_pickle_release_like",
    "pickle_then_zip",
    "zip_then_pickle",
    "tar",
    "nested_dict",
    "nested_list",
    "nested_state",
    "release_pickle_then_zip",
    "release_zip_then_pickle",
    "release_nested",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_file_runs_nothing(hostile, name, tmp_path):
    folder, files = hostile
    path = tmp_path / f"{name}.th"
    path.write_bytes(files[name])
    for load in (load_checkpoint, load_generator, lambda p: import_official(p, tmp_path / "o.pt")):
        _refusal(load, path)
        assert not marker(folder).exists(), f"{name}: the file's code ran"
    assert not (tmp_path / "o.pt").exists()


def test_import_script_refuses_a_polyglot_without_running_it(hostile, tmp_path):
    folder, files = hostile
    path = tmp_path / "polyglot.th"
    path.write_bytes(files["release_pickle_then_zip"])
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "import_official.py"),
            str(path),
            str(tmp_path / "o.pt"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not marker(folder).exists()


def test_deflate_bomb_is_refused_before_inflating(tmp_path):
    bomb = tmp_path / "bomb.pt"
    bomb.write_bytes(deflate_bomb(512 << 20))
    script = (
        "import sys\n"
        "from aeromamba.checkpoint import CheckpointError, load_checkpoint\n"
        "from tests.checkpoint_payloads import peak_rss_kib\n"
        "before = peak_rss_kib()\n"
        "try:\n"
        "    load_checkpoint(sys.argv[1])\n"
        "except CheckpointError as err:\n"
        "    print(err)\n"
        "print((peak_rss_kib() - before) // 1024)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(bomb)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    message, grown_mib = result.stdout.strip().splitlines()
    assert str(bomb) in message and "compressed" in message
    assert int(grown_mib) < 64


def test_storage_of_the_wrong_size_is_refused(tmp_path):
    path = write_project_checkpoint(tmp_path / "ok.pt")
    bad = tmp_path / "short.pt"
    bad.write_bytes(replace_member(path.read_bytes(), "/data/0", b"\0" * 4))
    assert "storage" in _refusal(load_checkpoint, bad)


def test_archive_with_a_duplicated_member_is_refused(tmp_path):
    data = write_project_checkpoint(tmp_path / "ok.pt").read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        first = archive.infolist()[0]
        pickled = archive.read(first)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as zin, zipfile.ZipFile(out, "w") as zout:
        for item in zin.infolist():
            zout.writestr(item, zin.read(item))
        with pytest.warns(UserWarning, match="Duplicate"):
            zout.writestr(first, pickled)
    bad = tmp_path / "dup.pt"
    bad.write_bytes(out.getvalue())
    assert "twice" in _refusal(load_checkpoint, bad)


def _edited(tmp_path: Path, edit) -> Path:
    package = project_package()
    edit(package)
    path = tmp_path / "edited.pt"
    save_checkpoint(path, package)
    return path


EDITS = {
    "wrong shapes": lambda p: p["generator"]["state"].update(
        {k: torch.zeros(3) for k in list(p["generator"]["state"])[:1]}
    ),
    "unknown argument": lambda p: p["generator"]["kwargs"].update(colour="blue"),
    "no state": lambda p: p["generator"].pop("state"),
    "lr_sr=0": lambda p: p["generator"]["kwargs"].update(lr_sr=0),
    "string for a dict": lambda p: p.update(generator="aero"),
    "string for kwargs": lambda p: p["generator"].update(kwargs="channels=4"),
    "no generator": lambda p: p.pop("generator"),
    "string for best": lambda p: p.update(best="generator"),
}


@pytest.mark.parametrize("edit", EDITS)
def test_malformed_project_checkpoint_is_one_line(edit, tmp_path):
    path = _edited(tmp_path, EDITS[edit])
    _refusal(load_generator, path)


def test_build_generator_names_the_file(tmp_path):
    path = _edited(tmp_path, EDITS["unknown argument"])
    package = load_checkpoint(path)
    with pytest.raises(CheckpointError, match=f"^{path}: .*colour"):
        build_generator(package, source=path)


def _release_kwargs(release: Path) -> dict:
    return dict(load_checkpoint(release / "generator_best.th")["generator"]["kwargs"])


RELEASE_EDITS = {
    "no state": lambda aero, kw: {"class": aero, "kwargs": kw, "args": []},
    "no kwargs": lambda aero, kw: {"class": aero, "state": {}, "args": []},
    "string for state": lambda aero, kw: {"class": aero, "kwargs": kw, "state": "w", "args": []},
    "list for kwargs": lambda aero, kw: {"class": aero, "kwargs": [1], "state": {}, "args": []},
    "string for models": lambda aero, kw: {"models": "generator"},
    "no generator": lambda aero, kw: {"models": {}},
    "string for a node": lambda aero, kw: {"class": aero, "kwargs": {"channels": aero()}},
}


@pytest.mark.parametrize("edit", RELEASE_EDITS)
def test_malformed_release_file_is_one_line(edit, release, tmp_path, monkeypatch):
    aero = fake_release_class(monkeypatch, "src.models.aero", "Aero")
    path = tmp_path / "edited.th"
    torch.save(RELEASE_EDITS[edit](aero, _release_kwargs(release)), path)
    _refusal(load_generator, path)


def _central_field(data: bytes, offset: int, value: bytes) -> bytes:
    """`data` with `value` written at `offset` into its first central directory record."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        start = archive.start_dir + offset
    return data[:start] + value + data[start + len(value) :]


ZIP_DAMAGE = {  # what one flipped byte in a central directory record makes zipfile raise
    "needs zip version 8.7": (6, bytes([87])),  # NotImplementedError, opening the archive
    "compressed patched data": (8, bytes([0x28])),  # NotImplementedError, reading the member
    "strong encryption": (8, bytes([0x48])),  # the same
    "name not UTF-8": (46, b"\xff"),  # the UTF-8 flag is set: UnicodeDecodeError
}


@pytest.mark.parametrize("damage", ZIP_DAMAGE)
def test_damaged_zip_records_are_one_line(damage, tmp_path):
    data = write_project_checkpoint(tmp_path / "ok.pt").read_bytes()
    bad = tmp_path / "damaged.pt"
    bad.write_bytes(_central_field(data, *ZIP_DAMAGE[damage]))
    assert "corrupt" in _refusal(load_checkpoint, bad)


def test_the_same_package_gives_the_same_bytes(tmp_path):
    torch.manual_seed(0)
    package = {"generator": model_package(make_generator("aeromamba", channels=4))}
    save_checkpoint(tmp_path / "a.pt", package)
    save_checkpoint(tmp_path / "b.pt", package)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
