#!/usr/bin/env bash
# Set up everything marl-gym needs in ./.venv: a virtual environment, the CPU build of PyTorch 2.13.0
# and marl-gym itself (editable) with all its extras. Safe to run again: when nothing changed since the
# last run it returns at once.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "marl-gym needs Python >= 3.11; '$PYTHON' is $("$PYTHON" --version 2>&1). Set PYTHON=/path/to/python3.11" >&2
    exit 1
fi

stamp=.venv/.marl-gym-setup
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi

echo "setting up .venv (virtual environment, torch 2.13.0 CPU, marl-gym[all]) ..." >&2
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
# The CPU build first: an unpinned torch pulled in by a dependency would be a multi-GB CUDA build.
.venv/bin/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[all]"
echo "$want" > "$stamp"
echo "setup done: .venv is ready" >&2
