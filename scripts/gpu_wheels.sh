#!/usr/bin/env bash
# Fetch, on a machine with PyPI, the wheels that a GPU machine without network access lacks
# (an image with PyTorch, Triton, NumPy, SciPy, tqdm, PyYAML but not the audio and config
# packages) into .whl/ (ignored by git), for scripts/gpu_check.sh and scripts/gpu_campaign.sh
# to install there. Python 3.12, x86-64 Linux; PYTHON_VERSION=3.11 etc. for another
# interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
version=${PYTHON_VERSION:-3.12}
rm -rf .whl
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version "$version" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl \
    soundfile cffi pycparser soxr hydra-core "omegaconf>=2.3,<2.4"  # hydra 1.3 needs <2.4
# antlr4's runtime (needed by omegaconf) is published as source only: a pure-Python wheel
python3 -m pip wheel --quiet --no-deps -w .whl "antlr4-python3-runtime==4.9.3"
ls .whl
