#!/usr/bin/env bash
# Validate mrfrecon's BIDS derivatives with the BIDS validators themselves (issue 21, item 4).
#
# Installs, once, into $BIDS_TOOLS (default ~/.cache/mrfrecon-bids-tools):
#   - bids-validator-deno 3.0.2 from PyPI: the BIDS project's schema validator (BIDS 1.11.1), which
#     knows the derivative file rules; ~125 MB (a deno binary and the validator bundle);
#   - bids-validator 1.15.0 from npm: the legacy validator the issue used; ~700 MB of node_modules
#     (skipped with --no-npm or when npm is missing).
# Then runs tests/test_bids.py::test_the_bids_validator_accepts_the_derivatives with each: a raw BIDS
# dataset of MRF series is matched and predicted into derivatives/, and the validator must report no
# error (3.x: the derivative dataset and the raw dataset; 1.x: the raw dataset, whose derivatives/
# that validator skips by design — see docs/IMPORT.md, "Maps out").
#
# Usage: scripts/check_bids.sh [--no-npm]      (from the repository root, after `make install`)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
TOOLS=${BIDS_TOOLS:-$HOME/.cache/mrfrecon-bids-tools}
mkdir -p "$TOOLS"

if [ ! -x "$TOOLS/venv/bin/bids-validator-deno" ]; then
    python3 -m venv "$TOOLS/venv"
    "$TOOLS/venv/bin/python" -m pip install -q bids-validator-deno==3.0.2
fi
validators=("$TOOLS/venv/bin/bids-validator-deno")

if [ "${1:-}" != "--no-npm" ] && command -v npm >/dev/null; then
    if [ ! -x "$TOOLS/npm/node_modules/.bin/bids-validator" ]; then
        mkdir -p "$TOOLS/npm"
        (cd "$TOOLS/npm" && npm install --silent --no-audit --no-fund bids-validator@1.15.0)
    fi
    validators+=("$TOOLS/npm/node_modules/.bin/bids-validator")
fi

status=0
for v in "${validators[@]}"; do
    echo "== $("$v" --version 2>/dev/null | tr -d '\033' | sed 's/\[[0-9;]*m//g' | head -1) ($v)"
    MRFRECON_BIDS_VALIDATOR="$v" OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} \
        "$PY" -m pytest -q -rA tests/test_bids.py -k test_the_bids_validator_accepts_the_derivatives || status=1
done
exit $status
