#!/usr/bin/env bash
# Run once by the postgres image on an empty volume (/docker-entrypoint-initdb.d):
# the owner role (runs migrate, owns the tables) and the application's role (only
# what manage.py grant_app_role gives it), both without superuser rights.
set -euo pipefail
psql -v ON_ERROR_STOP=1 -X -q --username "$POSTGRES_USER" --dbname postgres \
  -v owner="$DB_OWNER" -v ownerpass="$DB_OWNER_PASSWORD" \
  -v app="$DB_APP" -v apppass="$DB_APP_PASSWORD" -v db="$DB_NAME" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'owner', :'ownerpass') \gexec
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'app', :'apppass') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'owner') \gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'db') \gexec
SQL
