"""The data dictionary's labels are translatable and translated (issue 16): every variable and choice
label of the shared CSV is marked in exchange/dictionary_labels.py and has a Chinese entry in the
exchange catalogue, the export page shows them in the reader's language, and the export files stay
English whatever the language of the page that asked for them."""

import csv
import io
import re
import zipfile
from pathlib import Path

import polib
import pytest
from django.utils import translation

from exchange import dictionary_labels
from exchange.management.commands.dictionary_labels import render

EXCHANGE = Path(__file__).resolve().parents[2] / "exchange"
CATALOGUE = EXCHANGE / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"
ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-hans"}


def csv_labels() -> set[str]:
    """The labels people read, straight from the CSV: each variable's, and each code's ("M, Male | F, Female")."""
    labels = set()
    with (EXCHANGE / "data_dictionary.csv").open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            labels.add(row["label"])
            if "," in row["choices"]:  # else a sentence ("same codes as followups.timepoint"), not codes
                labels.update(part.split(",", 1)[1].strip() for part in row["choices"].split("|"))
    return labels


@pytest.fixture(autouse=True)
def _english_afterwards():
    yield
    translation.deactivate()  # a request leaves its language active in this thread


def test_every_label_of_the_dictionary_is_marked_for_translation():
    missing = csv_labels() - set(dictionary_labels.LABELS)
    assert not missing, f"run `manage.py dictionary_labels`, then translate: {sorted(missing)}"
    assert (EXCHANGE / "dictionary_labels.py").read_text(encoding="utf-8") == render()


def test_every_label_of_the_dictionary_has_a_chinese_translation():
    entries = {e.msgid: e for e in polib.pofile(str(CATALOGUE)) if not e.obsolete}
    untranslated = sorted(
        label
        for label in csv_labels()
        if label not in entries or not entries[label].msgstr or "fuzzy" in entries[label].flags
    )
    assert not untranslated


@pytest.mark.django_db
def test_the_export_page_shows_the_dictionary_in_the_readers_language(client, investigator):
    client.force_login(investigator)
    english = client.get("/exports/").content.decode()
    chinese = client.get("/exports/", **ZH).content.decode()
    row = '<th scope="row"><code>enrolment_date</code></th><td>{}</td>'
    assert row.format("Date of enrolment") in english
    assert row.format("入组日期") in chinese  # the variable name stays, the label is Chinese
    assert (
        "<code>interpedicular</code> 经椎弓根间入路" in chinese
        and "<code>interpedicular</code> Interpedicular" in english
    )
    assert "数据字典" in chinese and "Data dictionary" not in chinese


def files(response) -> dict[str, bytes]:
    zf = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    # the manifest, and the SPSS and Stata headers, hold the time they were written
    stamped = ("manifest.json", ".sav", ".dta")
    return {name: zf.read(name) for name in zf.namelist() if not name.endswith(stamped)}


def test_an_export_asked_for_in_chinese_holds_the_same_files_as_in_english(client, investigator, demo_cohort):
    client.force_login(investigator)
    data = {"shape": "both", "level": "deidentified"}
    english = files(client.post("/exports/", data))
    chinese = files(client.post("/exports/", data, **ZH))
    assert english == chinese
    dictionary = english["data_dictionary.csv"].decode("utf-8")
    assert "Interpedicular" in dictionary
    cjk = [
        name for name, body in english.items() if name.endswith(".csv") and re.search("[\u4e00-\u9fff]", body.decode())
    ]
    assert not cjk
