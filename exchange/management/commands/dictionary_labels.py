"""Regenerate exchange/dictionary_labels.py from the data dictionary (after the shared CSV changes)."""

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand

from exchange.dictionary import dictionary_labels

MODULE = Path(__file__).resolve().parents[2] / "dictionary_labels.py"
HEADER = '''"""The data dictionary's labels for people, marked for translation. Generated: do not edit by hand.

exchange/data_dictionary.csv is the shared contract and stays as it is; `manage.py dictionary_labels`
writes its variable and choice labels here with gettext_noop, so makemessages files them in the
exchange catalogue. tests/exchange/test_dictionary_labels.py fails when the CSV holds a label that
is missing here (run the command, then translate the new entries).
"""

from django.utils.translation import gettext_noop as _

LABELS = (
'''


def _quoted(text: str) -> str:
    """A double-quoted Python literal, as ruff format writes them (the module must pass `ruff format --check`)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render() -> str:
    lines = [f"    _({_quoted(label)}),\n" for label in dictionary_labels()]
    return HEADER + "".join(lines) + ")\n"


class Command(BaseCommand):
    help = "Write exchange/dictionary_labels.py: the dictionary's variable and choice labels, marked for translation."

    def handle(self, *args: Any, **options: Any) -> None:
        MODULE.write_text(render(), encoding="utf-8")
        self.stdout.write(f"{MODULE}: {len(dictionary_labels())} labels")
