"""The package carries what it needs: the variant presets (a base and small variants, the
sample rates stated once) are installed with it and Hydra composes the same settings from
them; a wheel installed away from the checkout builds, loads and runs a generator, and brings
the bundled model and the `aeromamba` command."""

from __future__ import annotations

import inspect
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from aeromamba.models import VARIANTS, Aero, experiment_config

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ROOT / "aeromamba" / "presets"


def preset(name: str) -> dict:
    return yaml.safe_load((PRESETS / f"{name}.yaml").read_text())


def flat(tree: dict, prefix: str = "") -> dict[str, object]:
    """{"aero.channels": 48, ...} of a nested dict."""
    out: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


@pytest.mark.parametrize("variant", VARIANTS)
def test_hydra_composes_the_package_presets(variant):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={variant}"])
    assert OmegaConf.to_container(cfg.experiment, resolve=True) == experiment_config(variant)
    assert cfg.experiment.name == variant
    assert "aero" not in yaml.safe_load(
        (ROOT / "conf" / "experiment" / f"{variant}.yaml").read_text()
    )


def test_variants_hold_only_their_differences():
    base = flat(preset("base"))
    for variant in VARIANTS:
        own = flat(preset(variant))
        assert set(own) <= set(base), f"{variant}: keys the base lacks"
        same = [key for key, value in own.items() if base[key] == value]
        assert not same, f"{variant} repeats the base: {same}"
        assert "???" not in flat(experiment_config(variant)).values()
    differing = {key for variant in VARIANTS for key in flat(preset(variant))}
    assert len(differing) == 6  # name, batch_size, dconv_lstm/time_attn/mamba, mamba_executed


def test_a_key_the_base_lacks_is_refused(tmp_path, monkeypatch):
    from aeromamba import models

    shutil.copy(PRESETS / "base.yaml", tmp_path / "base.yaml")
    (tmp_path / "typo.yaml").write_text("name: typo\naero:\n  chanels: 8\n")
    monkeypatch.setattr(models, "PRESETS", tmp_path)
    monkeypatch.setattr(models, "VARIANTS", ("typo",))
    with pytest.raises(Exception, match="chanels"):
        models.experiment_config("typo")


def test_the_base_sets_every_generator_argument_and_each_rate_once():
    assert set(preset("base")["aero"]) == set(inspect.signature(Aero).parameters)
    files = [*PRESETS.glob("*.yaml"), *(ROOT / "conf" / "experiment").glob("*.yaml")]
    lines = [line.split("#")[0].strip() for p in files for line in p.read_text().splitlines()]
    for rate in ("lr_sr", "hr_sr"):
        assert sum(line.startswith(f"{rate}:") for line in lines) == 1, rate


INSTALLED_CHECK = """
import sys
from pathlib import Path

import numpy as np
import torch

import aeromamba
from aeromamba.checkpoint import load_generator, model_package, save_checkpoint
from aeromamba.models import VARIANTS, make_generator

checkout = Path(sys.argv[1])
assert checkout not in Path(aeromamba.__file__).resolve().parents, aeromamba.__file__
assert not any(Path(p or ".").resolve() == checkout for p in sys.path)
counts = {v: sum(p.numel() for p in make_generator(v).parameters()) for v in VARIANTS}
assert counts == {"aero": 19432958, "aeromamba": 18550510, "aeromamba_official": 20964190}
torch.manual_seed(0)
save_checkpoint("small.pt", {"generator": model_package(make_generator(channels=8).eval())})
model = load_generator("small.pt")
audio = np.sin(np.arange(22050) * 0.05).astype(np.float32)
out, sr = aeromamba.upsample(audio, 22050, model)
assert sr == 44100 and out.shape == (44100,) and np.isfinite(out).all()
print("installed package works:", aeromamba.__file__)
"""


PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
MAX_WHEEL_BYTES = 20 * 2**20


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The project's wheel, built from a copy of the checkout (building leaves build/ and
    egg-info behind)."""
    tmp_path = tmp_path_factory.mktemp("wheel")
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.so")
    shutil.copytree(ROOT / "aeromamba", source / "aeromamba", ignore=ignore)
    subprocess.run(
        [*PIP, "wheel", str(source), "--no-deps", "--no-build-isolation", "-w", tmp_path / "dist"],
        check=True,
    )
    (built,) = (tmp_path / "dist").glob("aeromamba-*.whl")
    return built


@pytest.mark.slow
def test_wheel_installed_outside_the_checkout_works(tmp_path, wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for variant in ("base", *VARIANTS):
        assert f"aeromamba/presets/{variant}.yaml" in names
    assert "aeromamba/pretrained/aeromamba.pt" in names
    assert wheel.stat().st_size <= MAX_WHEEL_BYTES
    site = tmp_path / "site"
    subprocess.run([*PIP, "install", "--no-deps", "--target", site, wheel], check=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", INSTALLED_CHECK, str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
        cwd=elsewhere,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert str(site) in result.stdout


PRETRAINED_CHECK = """
import sys
from pathlib import Path

import aeromamba

checkout = Path(sys.argv[1])
assert checkout not in Path(aeromamba.__file__).resolve().parents, aeromamba.__file__
model = aeromamba.load_pretrained()
shipped = checkout / "aeromamba" / "pretrained" / "aeromamba.pt"
assert Path(aeromamba.PRETRAINED).read_bytes() == shipped.read_bytes(), "the checkout's model"
assert sum(p.numel() for p in model.parameters()) > 10**6
print("bundled model from", aeromamba.PRETRAINED)
"""


@pytest.mark.slow
def test_the_command_and_the_bundled_model_work_in_a_fresh_venv(tmp_path, wheel):
    import numpy as np
    import soundfile as sf

    venv = tmp_path / "venv"  # the system's torch and numpy; the wheel on top
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", venv], check=True)
    python, command = venv / "bin" / "python", venv / "bin" / "aeromamba"
    subprocess.run([python, "-m", "pip", "-q", "install", "--no-deps", wheel], check=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    name = "My Song, live [2001].wav"
    sf.write(work / name, np.sin(np.arange(22050) * 0.05).astype(np.float32) * 0.3, 11025)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}
    runs = {
        "out": [command, name, "-o", "out"],
        "out2": [python, "-m", "aeromamba", name, "-o", "out2", "--format", "flac"],
    }
    for folder, argv in runs.items():
        done = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        (written,) = (work / folder).iterdir()
        assert written.stem == Path(name).stem
        assert (sf.info(written).samplerate, sf.info(written).frames) == (44100, 88200)
    check = [python, "-c", PRETRAINED_CHECK, str(ROOT)]
    done = subprocess.run(check, cwd=work, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert str(venv) in done.stdout
