#!/usr/bin/env bash
# Print the path of a Python >= 3.12 interpreter (with venv/ensurepip), or exit 1.
# A pyenv shim exists on PATH even for versions pyenv has not selected, so every
# candidate is run, not just looked up.
find_python() {
  local root c
  root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
  for c in "${PYTHON:-}" python3.14 python3.13 python3.12 python3 \
           $(ls -d "$root"/versions/3.1[2-9]*/bin/python 2>/dev/null | sort -rV); do
    [ -n "$c" ] || continue
    if "$c" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then
      "$c" -c 'import sys; print(sys.executable)'; return 0
    fi
  done
  echo "no Python >= 3.12 found (install one, or set PYTHON=/path/to/python3.12)" >&2; return 1
}
find_python
