#!/usr/bin/env bash
# Make sure the local PostgreSQL runs and has the project's two roles and its
# database (idempotent). Runs psql as the postgres user, which works with both
# trust and Debian's default peer/scram set-ups.
#   DB_USER (registry)      owner: owns the database and tables, runs migrate and
#                           grant_app_role; CREATEDB so pytest-django can create test DBs
#   APP_USER (registry_app) the application's role: only the rights grant_app_role gives
#                           (no TRUNCATE, no ownership; the trail SELECT and INSERT only).
#                           The owner is a member, so tests can SET ROLE to it.
# Prints the owner's DATABASE_URL (for migrate and tests); with --app, the application's.
set -euo pipefail
DB_NAME=${DB_NAME:-registry}; DB_USER=${DB_USER:-registry}; DB_PASSWORD=${DB_PASSWORD:-registry}
APP_USER=${APP_USER:-registry_app}; APP_PASSWORD=${APP_PASSWORD:-registry_app}
PGPORT=${PGPORT:-5432}
PG_VER=${PG_VER:-$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)}; PG_CLUSTER=${PG_CLUSTER:-main}

if ! pg_isready -q -h 127.0.0.1 -p "$PGPORT"; then
  if [ -z "$PG_VER" ]; then echo "PostgreSQL is not installed (apt-get install postgresql) and nothing listens on 127.0.0.1:$PGPORT" >&2; exit 1; fi
  pg_ctlcluster --skip-systemctl-redirect "$PG_VER" "$PG_CLUSTER" start || [ $? -eq 2 ]
  for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 -p "$PGPORT" && break; sleep 1; done
  pg_isready -h 127.0.0.1 -p "$PGPORT" >&2
fi

if [ "$(id -u)" -eq 0 ]; then SUPSQL=(runuser -u postgres -- psql); else SUPSQL=(sudo -u postgres psql); fi
cd /   # else psql-as-postgres warns "could not change directory"
"${SUPSQL[@]}" -p "$PGPORT" -X -q -v ON_ERROR_STOP=1 \
  -v db="$DB_NAME" -v user="$DB_USER" -v pass="$DB_PASSWORD" \
  -v app="$APP_USER" -v apppass="$APP_PASSWORD" >/dev/null <<'SQL'
SET client_min_messages = warning;
SELECT format('CREATE ROLE %I LOGIN CREATEDB PASSWORD %L', :'user', :'pass')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'user') \gexec
SELECT format('ALTER ROLE %I LOGIN CREATEDB PASSWORD %L', :'user', :'pass') \gexec
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'app', :'apppass')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'app') \gexec
SELECT format('ALTER ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS PASSWORD %L', :'app', :'apppass') \gexec
SELECT format('GRANT %I TO %I', :'app', :'user') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'user')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
SQL
# passwords must be URL-safe
if [ "${1:-}" = "--app" ]; then echo "postgres://$APP_USER:$APP_PASSWORD@127.0.0.1:$PGPORT/$DB_NAME"
else echo "postgres://$DB_USER:$DB_PASSWORD@127.0.0.1:$PGPORT/$DB_NAME"; fi
