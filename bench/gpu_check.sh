#!/usr/bin/env bash
# The GPU check of the lab pipeline's extraction (issue 18), for a lent GPU machine: it has
# Python 3.12 and PyTorch but none of our other dependencies, and reaches no index, so the
# wheels it needs travel with the working tree (bench/gpu-wheels, made beforehand with
# `bench/gpu_check.sh --download` on a machine that reaches PyPI; about 55 MB).
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=bench/gpu-wheels
if [[ "${1:-}" == "--download" ]]; then
    python3 -m pip download --only-binary :all: --python-version 3.12 \
        --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
        -d "$WHEELS" numpy scipy
    exit 0
fi
python3 -m pip install -q --no-index --find-links "$WHEELS" numpy scipy
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
timeout 240 python3 bench/gpu_check.py --recordings "${RECORDINGS:-8}" --frames "${FRAMES:-300}"
