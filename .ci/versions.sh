#!/usr/bin/env bash
# The tokenization, window and label-alignment tests under other transformers/tokenizers versions than the main
# environment's: the lowest pyproject allows (transformers 5.17.0 with the lowest tokenizers it accepts, 0.23.1),
# and tokenizers 0.23.2, whose own overflow windows dropped tokens (the package cuts windows from the ids itself).
# Each set goes into a folder put first on PYTHONPATH over the project's .venv; nothing else is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="$(pwd)/.venv/bin/python"
PIP="$PY -m pip --disable-pip-version-check -q"
TESTS="tests/test_adapters.py tests/test_ner.py"

overlay() {  # overlay DIR PACKAGE==VERSION...: those packages in DIR, plus what the older hub client needs that
             # the main environment lacks (checked from / so that DIR itself is not on the path)
  local dir=$1; shift
  rm -rf "$dir"
  $PIP install --target "$dir" --no-deps "$@"
  if [[ " $* " == *" transformers=="* ]]; then  # transformers 5.17 wants huggingface-hub 1.x (httpx-based)
    $PIP install --target "$dir.hub" "huggingface-hub>=1.5,<2"
    for path in "$dir.hub"/*; do
      name=$(basename "$path"); module=${name%.py}
      case "$name" in *.dist-info|bin|__pycache__) continue;; esac
      if [[ "$module" == huggingface_hub ]] || ! (cd / && "$PY" -c "import $module" 2>/dev/null); then
        mv "$path" "$dir/"; mv "$dir.hub/${module}"-*.dist-info "$dir/" 2>/dev/null || true
      fi
    done
    rm -rf "$dir.hub"
  fi
}

LOW=${TMPDIR:-/tmp}/nlp-transfer-lowest
overlay "$LOW" transformers==5.17.0 tokenizers==0.23.1
PYTHONPATH="$LOW" $PY -c "import transformers, tokenizers; print('lowest versions: transformers', transformers.__version__, 'tokenizers', tokenizers.__version__)"
PYTHONPATH="$LOW" $PY -m pytest -q -p no:cacheprovider $TESTS

OVERFLOW=${TMPDIR:-/tmp}/nlp-transfer-tokenizers-0232
overlay "$OVERFLOW" tokenizers==0.23.2
PYTHONPATH="$OVERFLOW" $PY -c "import tokenizers; print('tokenizers', tokenizers.__version__)"
PYTHONPATH="$OVERFLOW" $PY -m pytest -q -p no:cacheprovider $TESTS tests/test_predict.py -k "window or long"
