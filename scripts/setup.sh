#!/usr/bin/env bash
# Create .venv if missing and install modelrank with its test extras. Re-running is cheap: the install is
# skipped while pyproject.toml is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.modelrank-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  # pip, not uv/poetry: the torch wheels this project pins lie on the machines' local disk (see README).
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[dev,text]"
  # animal-mnist declares tensorflow as a dependency but needs none of it to read its data files.
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps animal-mnist
  echo "$want" > "$stamp"
fi
