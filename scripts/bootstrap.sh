#!/usr/bin/env bash
# Create .venv and install robust-sft with its pinned dependencies. Idempotent: re-running is quick.
# torch is installed first and pinned, so pip does not pull a different (CUDA) build through another package.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.robust-sft-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/pip install --quiet --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/pip install --quiet "torch==2.13.0" 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/pip install --quiet -e ".[dev,math]" 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import robust_sft, torch, transformers, peft" 
  echo "$want" > "$stamp"
fi
