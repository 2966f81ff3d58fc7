#!/usr/bin/env bash
# One command for the whole test suite, as CI runs it: venv and requirements,
# Debian's Chromium for the browser tests, PostgreSQL (role and database created
# if missing), lint, migrations check, then pytest on PostgreSQL.
# Extra arguments go to pytest:  scripts/test.sh tests/dashboard -x
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh dev
PY=.venv/bin/python
# manage.py below runs in local mode (DEBUG on, throw-away key); pytest-django turns
# DEBUG off for every test and tests/test_project.py checks the production defaults.
export DJANGO_DEBUG=${DJANGO_DEBUG:-True}

export CHROMIUM_PATH=${CHROMIUM_PATH:-/usr/bin/chromium}
if [ ! -x "$CHROMIUM_PATH" ]; then
  echo "Installing Debian's Chromium for the browser tests..." >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
# The report's PDF (WeasyPrint needs Pango; Chinese needs a CJK font), its text check (pdftotext), the .sav check (PSPP),
# the R reader (Rscript), the ODM schema check (xmllint): Debian's packages, installed once.
if ! command -v pdftotext >/dev/null || ! command -v pspp >/dev/null || ! command -v xmllint >/dev/null \
  || ! command -v Rscript >/dev/null || ! ldconfig -p | grep -q libpangoft2 || ! fc-list | grep -q "Noto Sans CJK"; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends poppler-utils pspp libxml2-utils \
      r-base-core libpango-1.0-0 libpangoft2-1.0-0 fonts-noto-cjk >/dev/null; } \
    || echo "poppler-utils/pspp/R/libxml2-utils/Pango/fonts-noto-cjk not installed: their tests are skipped" >&2
fi

# The catalogue test (tests/test_translations.py) runs makemessages and msgfmt: GNU gettext.
if ! command -v msgfmt >/dev/null || ! command -v xgettext >/dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends gettext >/dev/null; } \
    || echo "gettext not installed: the catalogue test fails" >&2
fi

DATABASE_URL=${DATABASE_URL:-$(scripts/ensure_pg.sh)}
export DATABASE_URL

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/lint-imports --no-cache >/dev/null || .venv/bin/lint-imports --no-cache   # layer contracts (.importlinter)
$PY manage.py makemigrations --check --dry-run >/dev/null || { echo "Models changed without a migration: run manage.py makemigrations" >&2; exit 1; }
exec .venv/bin/pytest -n "${PYTEST_WORKERS:-2}" "$@"
