"""Shared by `manage.py backup` and `manage.py restore`: connection environment for the PostgreSQL tools, hashing."""

import hashlib
import os
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError
from django.db import connection

MANIFEST = "manifest.json"
DUMP = "database.dump"
MEDIA = "media"


def pg_env() -> dict[str, str]:
    """The environment that points pg_dump/pg_restore at Django's default database."""
    if connection.vendor != "postgresql":
        raise CommandError("backup and restore need PostgreSQL (DATABASE_URL); this database is " + connection.vendor)
    s: dict[str, Any] = connection.settings_dict
    env = dict(os.environ)
    for var, key in (("PGHOST", "HOST"), ("PGPORT", "PORT"), ("PGUSER", "USER"), ("PGPASSWORD", "PASSWORD")):
        if s.get(key):
            env[var] = str(s[key])
    env["PGDATABASE"] = s["NAME"]
    return env


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
