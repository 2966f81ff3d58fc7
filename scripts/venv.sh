#!/usr/bin/env bash
# Create .venv with a Python >= 3.12 and install the requirements into it, again
# only when they changed. run.sh installs the runtime ones (requirements.txt);
# test.sh passes "dev" to add the test and lint tools (requirements-dev.txt).
#   scripts/venv.sh        # runtime
#   scripts/venv.sh dev    # runtime + tests
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ ! -x "$root/.venv/bin/python" ]; then
  PY=$("$root/scripts/find_python.sh")
  echo "Creating .venv with $PY" >&2
  "$PY" -m venv "$root/.venv"
fi
if [ "${1:-}" = "dev" ]; then file=requirements-dev.txt; else file=requirements.txt; fi
stamp="$root/.venv/.${file%.txt}.sha256"
want=$(cat "$root/requirements.txt" "$root/$file" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "Installing $file into .venv (about a minute)..." >&2
  "$root/.venv/bin/python" -m pip install -q --disable-pip-version-check -r "$root/$file"
  echo "$want" > "$stamp"
fi
