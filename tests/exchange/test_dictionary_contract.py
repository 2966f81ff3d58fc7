"""The models and the shipped data dictionary cannot drift apart."""

import datetime
from decimal import Decimal

import pytest
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from exchange import dictionary, exporter
from registry.fields import MultiChoiceField
from tests.conftest import SHARED

MODELS = exporter.MODELS  # bundle file -> model
# Bundle key columns that are relations in the database.
KEYS = {"study_id", "procedure_number", "timepoint"}
RELATIONS = {("patients", "site"): "site", ("consents", "consent_version"): "consent_version"}
TYPES = {
    "text": (models.CharField, models.TextField, models.ForeignKey),  # consent_version: by its text key
    "integer": (models.IntegerField,),
    "decimal": (models.DecimalField, models.FloatField),
    "date": (models.DateField,),
    "yesno": (models.BooleanField,),
    "choice": (models.CharField, models.IntegerField, models.ForeignKey),
    "multichoice": (MultiChoiceField,),
}


def field_for(var):
    model = MODELS[var.file]
    if var.is_key:
        return model._meta.pk if var.name == "record_id" else model._meta.get_field("version")
    if (var.file, var.name) in RELATIONS:
        return model._meta.get_field(RELATIONS[(var.file, var.name)])
    own_keys = {"patients": {"study_id"}, "procedures": {"procedure_number"}, "followups": {"timepoint"}}
    if var.name in KEYS and var.name not in own_keys.get(var.file, set()):
        return None  # a key to the parent row, not a column of this table
    return model._meta.get_field(var.name)


def validator_bound(field, kind):
    for v in field.validators:
        if isinstance(v, kind):
            return v.limit_value
    return None


def test_the_shipped_dictionary_is_the_crf():
    """The shipped dictionary is the CRF, line for line, plus the registry's row key and version columns
    (record_id, record_version) at the end of each clinical file's block."""
    shipped = dictionary.DICTIONARY_PATH.read_text(encoding="utf-8").splitlines()
    source = SHARED / "crf" / "data_dictionary.csv"
    if not source.exists():
        pytest.skip("developer material not beside this clone")
    keys = [line for line in shipped if line.split(",")[1:2] in (["record_id"], ["record_version"])]
    assert [line for line in shipped if line not in keys] == source.read_text(encoding="utf-8").splitlines()
    assert sorted(line.split(",")[0] for line in keys) == sorted(dictionary.KEYED_FILES * 2)
    for file in dictionary.KEYED_FILES:
        names = [v.name for v in dictionary.variables_for(file)]
        assert names[-2:] == ["record_id", "record_version"], file


@pytest.mark.parametrize("var", dictionary.variables(), ids=lambda v: f"{v.file}.{v.name}")
def test_every_variable_maps_to_a_model_field(var):
    field = field_for(var)
    if field is None:
        return
    assert isinstance(field, TYPES[var.type]), f"{var.file}.{var.name}: {type(field).__name__} for {var.type}"
    if var.type == "choice" and var.choices and not isinstance(field, models.ForeignKey):
        codes = [str(c) for c, _ in field.choices]
        assert codes == list(var.codes)
    if var.type == "multichoice":
        assert [c for c, _ in field.options] == list(var.codes)
    if var.type in ("integer", "decimal") and not var.is_derived:
        for text, kind in ((var.min, MinValueValidator), (var.max, MaxValueValidator)):
            expected = Decimal(text) if text else None
            found = validator_bound(field, kind)
            if expected is not None and expected == 0 and found is None:
                assert isinstance(field, (models.PositiveIntegerField, models.PositiveSmallIntegerField))
                continue
            assert (Decimal(str(found)) if found is not None else None) == expected, f"{kind.__name__} of {var.name}"
    if var.type == "date" and var.min:
        assert validator_bound(field, MinValueValidator) == datetime.date.fromisoformat(var.min)
    if var.type == "date" and var.max == "today":
        assert any(getattr(v, "__name__", "") == "not_in_future" for v in field.validators)
    if var.required == "y":
        assert not field.blank, f"{var.name} is required in the CRF"
    elif var.required != "derived" and not isinstance(field, models.BooleanField):
        assert field.blank, f"{var.name} is optional or conditional in the CRF"
    if var.is_key:
        assert field.primary_key or (field.name == "version" and not field.editable)
    elif var.required == "derived":
        assert not field.editable, f"{var.name} is derived: computed, never typed"
