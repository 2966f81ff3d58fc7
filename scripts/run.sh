#!/usr/bin/env bash
# One command to try the registry locally: venv, requirements, SQLite database,
# the demo cohort and demo users, then the development server.
#   scripts/run.sh            # http://127.0.0.1:8000/
#   PORT=8080 DEMO_PASSWORD=... scripts/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh
PY=.venv/bin/python
PORT=${PORT:-8000}
# The local demo: DEBUG on and a throw-away key (production never sets this).
export DJANGO_DEBUG=${DJANGO_DEBUG:-True}
$PY manage.py migrate --noinput -v0
$PY manage.py load_demo ${DEMO_PASSWORD:+--password "$DEMO_PASSWORD"}
echo
echo "Open http://127.0.0.1:$PORT/ and log in with one of the demo logins above. Ctrl-C stops the server."
exec $PY manage.py runserver "127.0.0.1:$PORT"
