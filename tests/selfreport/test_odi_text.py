"""The ODI wording: shipped placeholders (clearly marked), replaced by the site's licensed text."""

import json

import pytest
from django.core.management import CommandError, call_command

from outcomes.odi import SHIPPED
from selfreport import services

pytestmark = pytest.mark.django_db


def licensed(tmp_path, **change):
    content = {
        "sections": [
            {"title": f"Licensed title {n}", "statements": [f"Licensed {n}.{s}" for s in range(6)]}
            for n in range(1, 11)
        ]
    }
    content.update(change)
    path = tmp_path / "odi.json"
    path.write_text(json.dumps(content), encoding="utf-8")
    return path


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_the_shipped_texts_are_complete_placeholders(language):
    content = json.loads((SHIPPED / f"{language}.json").read_text(encoding="utf-8"))
    assert content["placeholder"] is True and "PLACEHOLDER" in content["notice"]
    assert len(content["sections"]) == 10
    assert all(len(s["statements"]) == 6 for s in content["sections"])


def test_the_installed_text_replaces_the_placeholder_on_the_page(client, tmp_path, patient, nurse):
    call_command("install_odi_text", str(licensed(tmp_path)), "--language", "en")
    raw = services.create_link(patient=patient, timepoint="m1", user=nurse).new_token()
    body = client.get(f"/r/{raw}/").content.decode()
    assert "Licensed title 4" in body and "Licensed 4.5" in body
    assert "PLACEHOLDER" not in body and "I walk a few hundred metres" not in body


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sections": []}, "ten ODI sections"),
        (
            {"sections": [{"title": "T", "statements": ["a"] * 6}] * 9 + [{"title": "T", "statements": ["a"] * 5}]},
            "Section 10: 'statements' must be six",
        ),
        ({"sections": [{"title": "", "statements": ["a"] * 6}] * 10}, "Section 1: give its 'title'"),
    ],
)
def test_a_malformed_file_is_refused_naming_the_problem(tmp_path, change, message):
    with pytest.raises(CommandError, match=message):
        call_command("install_odi_text", str(licensed(tmp_path, **change)), "--language", "en")


def test_a_file_that_is_not_json_is_refused(tmp_path):
    bad = tmp_path / "odi.json"
    bad.write_bytes(b"\xff\xfe not json")
    with pytest.raises(CommandError, match="not UTF-8 JSON"):
        call_command("install_odi_text", str(bad), "--language", "zh-hans")
