#!/usr/bin/env bash
# Creates .venv-ref/ (git-ignored by /.venv*/) with the packages the pretrained-model reference
# scripts need (scripts/reference_smollm2.py): torch, transformers and its GGUF loader (gguf,
# accelerate), tokenizers, safetensors, numpy, jinja2 (chat templates). Run by hand, from the
# repository root; never in CI. The versions are those the committed fixtures were made with.
#
# Usage: scripts/setup_reference_env.sh [VENV_DIR]     (default .venv-ref)
set -euo pipefail

VENV_DIR="${1:-.venv-ref}"
PYTHON="${PYTHON:-python3}"
PACKAGES=(
    torch==2.15.0
    transformers==5.25.0
    gguf==0.19.0
    accelerate==1.16.0   # transformers refuses to load a GGUF file without it
    tokenizers==0.23.3
    safetensors==0.8.0
    numpy==2.4.6
    jinja2==3.1.6
)

if [[ ! -x "$VENV_DIR/bin/python" ]]; then
    echo "==> creating $VENV_DIR"
    "$PYTHON" -m venv "$VENV_DIR"
fi
echo "==> installing ${PACKAGES[*]}"
"$VENV_DIR/bin/python" -m pip install "${PACKAGES[@]}"
"$VENV_DIR/bin/python" -c "import torch, transformers, gguf, accelerate, tokenizers, safetensors, numpy, jinja2; \
print('reference environment ready: torch', torch.__version__, 'transformers', transformers.__version__)"
