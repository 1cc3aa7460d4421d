"""The core package stands apart from the training corpus's builders: `aeromamba.data` holds
the pipeline every user trains with, and importing the core loads nothing of
`aeromamba_corpora`."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import aeromamba.data

# Every module of aeromamba.data imported in a fresh interpreter, then the loaded module names.
IMPORT_CORE = """
import importlib, json, pkgutil, sys
import aeromamba, aeromamba.data
for module in pkgutil.walk_packages(aeromamba.data.__path__, "aeromamba.data."):
    importlib.import_module(module.name)
print(json.dumps(sorted(sys.modules)))
"""


def test_data_package_holds_the_training_pipeline_only() -> None:
    names = {module.name for module in pkgutil.iter_modules(aeromamba.data.__path__)}
    assert names == {"bandwidth", "corpus", "dataset", "prepare", "synthetic"}


def test_importing_the_core_loads_no_corpus_builder() -> None:
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_CORE], capture_output=True, text=True, check=True
    )
    loaded = json.loads(result.stdout)
    assert "aeromamba.data.synthetic" in loaded  # the walk really imported the data modules
    builders = [name for name in loaded if name.split(".")[0] in {"aeromamba_corpora", "music21"}]
    assert builders == []
