#!/usr/bin/env bash
# Create .venv and install kinema into it. `--dev` adds the test-only reference libraries.
# torch is pinned in the same pip command as everything else, so nothing can pull a CUDA
# build of torch onto a CPU machine; torchvision is kept out (its PyPI build is CUDA-only
# and breaks transformers/diffusers imports beside the CPU torch).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="eval"
[ "${1:-}" = "--dev" ] && extras="eval,dev"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q "torch==2.13.0" -e ".[${extras}]"
if .venv/bin/python -m pip show -q torchvision >/dev/null 2>&1; then
  echo "setup: torchvision found in .venv; removing it (it breaks transformers/diffusers imports here)" >&2
  .venv/bin/python -m pip uninstall -q -y torchvision
fi
