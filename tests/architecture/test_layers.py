"""The layer contracts in .importlinter hold, and they are not a formality:
an upward import added to a copy of the tree breaks them."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")
APPS = [
    "registry",
    "accounts",
    "audit",
    "patients",
    "procedures",
    "outcomes",
    "dashboard",
    "exchange",
    "oversight",
    "selfreport",
    "api",
]


def lint(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT), "--no-cache", "--config", str(tree / ".importlinter")],
        cwd=tree,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
    )


def copy_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    for app in APPS:
        shutil.copytree(ROOT / app, tree / app, ignore=shutil.ignore_patterns("templates", "static", "*.csv", "demo"))
    shutil.copy(ROOT / ".importlinter", tree / ".importlinter")
    return tree


def test_the_shipped_tree_keeps_every_contract(tmp_path):
    result = lint(copy_tree(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_a_clinical_app_importing_the_dashboard_breaks_the_contracts(tmp_path):
    tree = copy_tree(tmp_path)
    models = tree / "patients" / "models.py"
    models.write_text("from dashboard import stats  # noqa\n" + models.read_text())
    result = lint(tree)
    assert result.returncode != 0
    assert "patients.models -> dashboard.stats" in result.stdout


def test_a_lower_clinical_app_importing_a_higher_one_breaks_the_layers(tmp_path):
    tree = copy_tree(tmp_path)
    models = tree / "procedures" / "models.py"
    models.write_text("from outcomes.models import FollowUp  # noqa\n" + models.read_text())
    result = lint(tree)
    assert result.returncode != 0
    assert "procedures.models -> outcomes.models" in result.stdout
