"""The catalogues are complete: every string marked in the code has a Chinese translation (issue 16).

The test copies the source tree to a temporary directory, runs scripts/messages.sh there
(makemessages for every language and app, then compilemessages, whose msgfmt --check-format
refuses a translation that lost a placeholder) and compares the result with the committed
catalogues. It fails, listing `catalogue: msgid`, on a string that is marked in the code but
missing from the committed catalogue, untranslated or fuzzy there, and on a committed .mo
that does not hold what its .po says (the app reads the .mo: an uncompiled fix is no fix).
Needs GNU gettext (scripts/test.sh installs it).
"""

import os
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import polib
import pytest

ROOT = Path(__file__).resolve().parent.parent
# Not part of the app's source; large or machine-made.
SKIP = shutil.ignore_patterns(
    ".*", "__pycache__", "*.pyc", "node_modules", "staticfiles", "media", "db.sqlite3", "out", "*.mo"
)


def _key(entry: polib.POEntry | polib.MOEntry) -> tuple[str | None, str]:
    return (entry.msgctxt, entry.msgid)


def _translated(entry: polib.POEntry) -> bool:
    if entry.msgid_plural:
        return bool(entry.msgstr_plural) and all(entry.msgstr_plural.values())
    return bool(entry.msgstr)


def _catalogues(tree: Path) -> list[Path]:
    return sorted(p.relative_to(tree) for p in tree.glob("**/locale/*/LC_MESSAGES/*.po") if ".venv" not in p.parts)


@pytest.fixture(scope="module")
def fresh_tree(tmp_path_factory) -> Path:
    """The committed tree with its catalogues regenerated from the code, as `make messages` would."""
    if not shutil.which("xgettext") or not shutil.which("msgfmt"):
        pytest.fail("GNU gettext (xgettext, msgfmt) is not installed: apt-get install gettext")
    tree = tmp_path_factory.mktemp("catalogues") / "src"
    shutil.copytree(ROOT, tree, ignore=SKIP)
    env = {**os.environ, "MESSAGES_PYTHON": sys.executable, "DJANGO_DEBUG": "True"}
    env.pop("DJANGO_SETTINGS_MODULE", None)  # manage.py sets its own
    run = subprocess.run(["bash", "scripts/messages.sh"], cwd=tree, env=env, capture_output=True, text=True)
    if run.returncode != 0:
        pytest.fail(f"scripts/messages.sh failed (a broken placeholder or a syntax error?):\n{run.stderr[-4000:]}")
    return tree


def test_every_marked_string_is_translated_in_the_committed_catalogue(fresh_tree):
    problems: dict[str, list[str]] = defaultdict(list)
    for rel in _catalogues(fresh_tree):
        committed_path = ROOT / rel
        committed = {_key(e): e for e in polib.pofile(str(committed_path))} if committed_path.exists() else {}
        for entry in polib.pofile(str(fresh_tree / rel)):
            if entry.obsolete:
                continue
            mine = committed.get(_key(entry))
            if mine is None or (entry.msgid_plural and not mine.msgid_plural):
                why = "missing (marked in the code, not in the committed catalogue)"
            elif "fuzzy" in mine.flags:
                why = "fuzzy"
            elif not _translated(mine):
                why = "untranslated"
            else:
                continue
            where = entry.occurrences[0][0] if entry.occurrences else "?"
            problems[why].append(f"{rel}: {entry.msgid!r}  ({where})")
    report = [f"{why}: {len(lines)}\n  " + "\n  ".join(sorted(lines)) for why, lines in sorted(problems.items())]
    if problems:
        pytest.fail(
            "Catalogue entries to translate (run `make messages`, then translate):\n" + "\n".join(report), pytrace=False
        )


def test_no_committed_entry_is_fuzzy_or_empty():
    """Also the entries the code no longer uses: a fuzzy guess must not reach a reader later."""
    bad = []
    for rel in _catalogues(ROOT):
        for entry in polib.pofile(str(ROOT / rel)):
            if not entry.obsolete and ("fuzzy" in entry.flags or not _translated(entry)):
                bad.append(f"{rel}: {entry.msgid!r}")
    if bad:
        pytest.fail("Fuzzy or untranslated entries:\n  " + "\n  ".join(bad), pytrace=False)


def test_every_committed_mo_holds_what_its_po_says():
    stale = []
    for rel in _catalogues(ROOT):
        po_path = ROOT / rel
        mo_path = po_path.with_suffix(".mo")
        if not mo_path.exists():
            stale.append(f"{rel}: no compiled .mo beside it")
            continue
        # What msgfmt writes: the translated, non-fuzzy entries (header aside).
        want = {}
        for e in polib.pofile(str(po_path)):
            if e.obsolete or "fuzzy" in e.flags or not _translated(e):
                continue
            want[_key(e)] = (e.msgstr, {int(k): v for k, v in e.msgstr_plural.items()})
        got = {}
        for e in polib.mofile(str(mo_path)):
            if e.msgid:
                got[_key(e)] = (e.msgstr, {int(k): v for k, v in e.msgstr_plural.items()})
        for key in sorted(set(want) | set(got), key=lambda k: (k[0] or "", k[1])):
            if want.get(key) != got.get(key):
                stale.append(f"{rel}: {key[1]!r} differs between .po and .mo")
    if stale:
        pytest.fail("Compiled catalogues out of date (run `make messages`):\n  " + "\n  ".join(stale), pytrace=False)
