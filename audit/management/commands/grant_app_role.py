"""manage.py grant_app_role ROLE: give the application's database role exactly what it needs.

Run it as the owner role (the one that runs `migrate`), after every migrate.
It is idempotent. The owner keeps ownership of every table, so the
application's role can never TRUNCATE, ALTER, DISABLE TRIGGER, DROP TRIGGER
or GRANT. The application's role gets:

- CONNECT on the database and USAGE on the schema;
- SELECT, INSERT, UPDATE, DELETE on every table, except
  - `audit_auditevent` (the trail): SELECT and INSERT only,
  - `django_migrations`: SELECT only;
- USAGE and SELECT on every sequence (no setval).

Whatever it held before is revoked first, so a stray privilege such as
TRUNCATE does not survive.
"""

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

APPEND_ONLY = {"audit_auditevent": "SELECT, INSERT", "django_migrations": "SELECT"}
READ_WRITE = "SELECT, INSERT, UPDATE, DELETE"


class Command(BaseCommand):
    help = "Grant the application's PostgreSQL role its rights (run as the owner, after migrate)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("role", help="the application's role, e.g. registry_app")

    def handle(self, *args: Any, role: str, **options: Any) -> None:
        if connection.vendor != "postgresql":
            raise CommandError("grant_app_role is for PostgreSQL; this database is " + connection.vendor)
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute(
                "SELECT rolsuper, current_user = rolname FROM pg_roles WHERE rolname = %s",
                [role],
            )
            found = cur.fetchone()
            if found is None:
                raise CommandError(f"No database role {role!r}: create it first (scripts/ensure_pg.sh does)")
            if found[0] or found[1]:
                raise CommandError(f"{role!r} is a superuser or the role running this command: use a separate role")
            q = connection.ops.quote_name
            cur.execute("SELECT current_database(), current_schema()")
            database, schema = cur.fetchone()
            cur.execute(
                "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'S', 'v') ORDER BY c.relname"
            )
            relations = cur.fetchall()
            r = q(role)
            cur.execute(f"GRANT CONNECT ON DATABASE {q(database)} TO {r}")
            cur.execute(f"GRANT USAGE ON SCHEMA {q(schema)} TO {r}")
            tables = 0
            for name, kind in relations:
                cur.execute(f"REVOKE ALL ON {q(name)} FROM {r}")
                if kind == "S":
                    cur.execute(f"GRANT USAGE, SELECT ON SEQUENCE {q(name)} TO {r}")
                else:
                    cur.execute(f"GRANT {APPEND_ONLY.get(name, READ_WRITE)} ON {q(name)} TO {r}")
                    tables += 1
        self.stdout.write(
            f"{role}: rights granted on {tables} table(s) of {database}; audit_auditevent SELECT and INSERT only"
        )
