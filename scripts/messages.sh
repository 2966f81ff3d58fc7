#!/usr/bin/env bash
# Update every translation catalogue from the code, then compile them (issue 16).
#   scripts/messages.sh      # or: make messages
# Run from anywhere; works from the repository root. makemessages files each string under
# the nearest locale/ directory above its source file: an app's own <app>/locale/, else the
# project's locale/ (LOCALE_PATHS: templates/, static/js, registry/). A new app gets its
# catalogue once its owner creates <app>/locale/. Needs GNU gettext (Debian: gettext).
set -euo pipefail
cd "$(dirname "$0")/.."
# MESSAGES_PYTHON: an interpreter that already has the requirements (the catalogue test's own).
PY=${MESSAGES_PYTHON:-}
if [ -z "$PY" ]; then scripts/venv.sh; PY=.venv/bin/python; fi
export DJANGO_DEBUG=${DJANGO_DEBUG:-True}   # manage.py in local mode (throw-away key)
if ! command -v msgfmt >/dev/null || ! command -v xgettext >/dev/null; then
  echo "GNU gettext is missing: apt-get install gettext" >&2
  exit 1
fi
# Not code of the app: the virtualenv, collected static files, tests, benchmarks, uploads.
IGNORE=(--ignore '.*' --ignore 'node_modules/*' --ignore 'staticfiles/*' --ignore 'media/*'
        --ignore 'tests/*' --ignore 'bench/*' --ignore 'static/vendor/*' --ignore 'scripts/*')
LANGS=()
for code in $($PY -c "import os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'registry.settings')
import django; django.setup(); from django.conf import settings; from django.utils.translation import to_locale
print(' '.join(to_locale(c) for c, _ in settings.LANGUAGES if c != settings.LANGUAGE_CODE))"); do
  LANGS+=(-l "$code")
done
$PY manage.py makemessages "${LANGS[@]}" --no-obsolete "${IGNORE[@]}"
# JavaScript strings come from the templates (data attributes, json_script); a djangojs
# catalogue only if some script calls gettext() itself.
if grep -rqs --include='*.js' -E '(^|[^.a-zA-Z_])n?gettext\(' static/js */static; then
  $PY manage.py makemessages -d djangojs "${LANGS[@]}" --no-obsolete "${IGNORE[@]}"
fi
$PY manage.py compilemessages "${LANGS[@]}" "${IGNORE[@]}"
