"""The run command's path: the demo on the embedded SQLite database (migrate, load_demo, the summary)
reproduces the paper's figures, as the PostgreSQL tests do (tests/dashboard/test_paper.py)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.dashboard.test_paper import assert_same

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = ROOT / "tests" / "dashboard" / "paper_expected.json"


def test_the_demo_on_sqlite_gives_the_papers_summary(tmp_path):
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
        "DJANGO_DEBUG": "True",
        "MEDIA_ROOT": str(tmp_path / "media"),
    }
    env.pop("TEST_DATABASE_NAME", None)

    def manage(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    manage("migrate", "--noinput", "-v0")
    assert "Demo logins" in manage("load_demo", "--password", "demo-password-for-tests")
    summary = json.loads(manage("registry_summary", "--json"))
    expected = json.loads(EXPECTED.read_text())
    for key in ("generated_at", "paper", "notes"):
        summary.pop(key, None)
        expected.pop(key, None)
    assert_same(summary, expected)

    # Every role's main pages answer on SQLite (the worklist and dashboard have an ORM path there).
    pages = manage("shell", "-c", PAGES)
    statuses = dict(line.rsplit(" ", 1) for line in pages.splitlines() if line.count(" ") == 2)
    assert len(statuses) == 10 and set(statuses.values()) == {"200"}, statuses


PAGES = """
from django.test import Client
from django.test.utils import setup_test_environment
from accounts.models import User
from patients.models import Patient
setup_test_environment()
client, sid = Client(), Patient.objects.first().study_id
for username, urls in {
    "nurse": ["/patients/worklist/", "/patients/", f"/patients/{sid}/", f"/visits/{sid}/m1/"],
    "investigator": ["/dashboard/", "/dashboard/summary.json", "/exports/"],
    "monitor": ["/audit/monitoring/", "/audit/quality/", "/audit/completeness/"],
}.items():
    client.force_login(User.objects.get(username=username))
    for url in urls:
        print(username, url, client.get(url).status_code)
"""
