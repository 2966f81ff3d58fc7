#!/usr/bin/env bash
# Create .venv with a Python >= 3.12 and install requirements.txt into it,
# again only when requirements.txt changed. Sourced by run.sh and test.sh.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ ! -x "$root/.venv/bin/python" ]; then
  PY=$("$root/scripts/find_python.sh")
  echo "Creating .venv with $PY" >&2
  "$PY" -m venv "$root/.venv"
fi
stamp="$root/.venv/.requirements.sha256"
want=$(sha256sum "$root/requirements.txt" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "Installing requirements into .venv (about a minute)..." >&2
  "$root/.venv/bin/python" -m pip install -q --disable-pip-version-check -r "$root/requirements.txt"
  echo "$want" > "$stamp"
fi
