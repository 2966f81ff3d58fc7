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
# The compiled catalogues (.mo) are committed: the app needs no gettext to speak Chinese;
# scripts/messages.sh (GNU gettext) rebuilds them after a change of text.
$PY manage.py migrate --noinput -v0
$PY manage.py load_demo ${DEMO_PASSWORD:+--password "$DEMO_PASSWORD"}
echo
# Background work beside the server (e-mails to the console, reminders, digests, alerts):
# the task worker and the schedule every 5 minutes, both stopped when the server stops.
$PY manage.py db_worker --no-reload -v0 &
WORKER=$!
$PY manage.py run_scheduler_once --every 300 >/dev/null &
SCHEDULER=$!
trap 'kill $WORKER $SCHEDULER 2>/dev/null || true' EXIT
echo "Open http://127.0.0.1:$PORT/ and log in with one of the demo logins above. Ctrl-C stops the server."
$PY manage.py runserver "127.0.0.1:$PORT"
