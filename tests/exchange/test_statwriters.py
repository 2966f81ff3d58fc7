"""The SPSS and Stata writers (exchange/statwriters.py) read back by other programs' readers:
ReadStat (pyreadstat) for both, pandas' own Stata reader, and PSPP's pspp-convert for .sav.
The oracle is the values the test wrote, by hand."""

import csv
import datetime
import math
import shutil
import subprocess

import numpy as np
import pandas as pd
import pyreadstat
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchange.statwriters import DATE, DOUBLE_MAX, NUMBER, STRING, Cells, DtaWriter, SavWriter, Variable

WHEN = datetime.datetime(2026, 12, 3, 10, 11, 12)
LONG = "é" * 700 + "end"  # 1,403 bytes: six SPSS segments, a two-byte character cut at each 255
HUGE = "ü" * 1100  # 2,200 bytes: a Stata strL
VARIABLES = [
    Variable("dose", "Dose (mg)", NUMBER, decimals=2, measure="scale"),
    Variable("grade", "Grade", NUMBER, value_labels={1.0: "1: mild", 2.0: "2: severe"}, measure="ordinal"),
    Variable("seen_on", "Seen on", DATE),
    Variable("sex", "Sex", STRING, width=1, value_labels={"M": "Male", "F": "Female"}, blank_is_missing=True),
    Variable("lesion", "Lesion", STRING, width=12, value_labels={"osteolytic": "Osteolytic"}, blank_is_missing=True),
    Variable("note_text_with_a_long_name", "Note", STRING, width=len(LONG.encode()), blank_is_missing=True),
    Variable("essay", "Essay", STRING, width=len(HUGE.encode())),
    Variable("always_blank", "Never answered", STRING, width=0),
]
ROWS = [  # dose, grade, seen_on (days since 1970-01-01), sex, lesion, note, essay, always_blank
    (1.25, 1.0, 0.0, "M", "osteolytic", LONG, HUGE, ""),
    (math.nan, math.nan, 19000.0, "", "mixed", "", "", ""),
    (3.0, 2.0, math.nan, "F", "", 'short, "quoted"\nnext line', "b", ""),
]


def columns(rows):
    out = []
    for i, v in enumerate(VARIABLES):
        values = [r[i] for r in rows]
        out.append(Cells.of(values) if v.kind == STRING else np.array(values, dtype=np.float64))
    return out


def write(tmp_path, writer, suffix, variables=VARIABLES, chunks=(ROWS[:2], ROWS[2:])):
    path = tmp_path / f"t.{suffix}"
    with open(path, "wb") as out:
        w = writer(out, variables, sum(len(c) for c in chunks), "A file label", WHEN)
        for chunk in chunks:
            w.write(columns(chunk))
        w.close()
    return path


def same(got, expected) -> bool:
    if isinstance(expected, float) and math.isnan(expected):
        return got is None or got == "" or (isinstance(got, float) and math.isnan(got))
    return got == expected


def as_date(days):
    return datetime.date(1970, 1, 1) + datetime.timedelta(days=days)


def test_readstat_reads_the_sav_as_written(tmp_path):
    frame, meta = pyreadstat.read_sav(str(write(tmp_path, SavWriter, "sav")), user_missing=True)
    assert list(frame.columns) == [v.name for v in VARIABLES]
    for i, row in enumerate(ROWS):
        expected = [*row[:2], as_date(row[2]) if not math.isnan(row[2]) else math.nan, *row[3:]]
        for name, value in zip(frame.columns, expected, strict=True):
            assert same(frame[name].iloc[i], value), (i, name)
    assert meta.file_label == "A file label"
    assert meta.column_names_to_labels["dose"] == "Dose (mg)"
    assert meta.variable_value_labels == {
        "grade": {1.0: "1: mild", 2.0: "2: severe"},
        "sex": {"M": "Male", "F": "Female"},
        "lesion": {"osteolytic": "Osteolytic"},
    }
    blank = [{"lo": "", "hi": ""}]  # a short (record 2) and a long string (record 7.22)
    assert meta.missing_ranges == {"sex": blank, "lesion": blank, "note_text_with_a_long_name": blank}
    assert meta.variable_measure["dose"] == "scale" and meta.variable_measure["grade"] == "ordinal"
    assert meta.original_variable_types["dose"] == "F12.2" and meta.original_variable_types["seen_on"] == "SDATE10"
    assert meta.original_variable_types["note_text_with_a_long_name"] == "A1403"


def test_readstat_and_pandas_read_the_dta_as_written(tmp_path):
    path = write(tmp_path, DtaWriter, "dta")
    frame, meta = pyreadstat.read_dta(str(path))
    other = pd.read_stata(path, convert_categoricals=False)
    for i, row in enumerate(ROWS):
        expected = [*row[:2], as_date(row[2]) if not math.isnan(row[2]) else math.nan, *row[3:]]
        for name, value in zip(frame.columns, expected, strict=True):
            assert same(frame[name].iloc[i], value), (i, name)
            theirs = other[name].iloc[i]
            theirs = theirs.date() if isinstance(theirs, pd.Timestamp) else theirs
            assert same(None if theirs is pd.NaT else theirs, value), ("pandas", i, name)
    assert meta.value_labels[meta.variable_to_label["grade"]] == {1: "1: mild", 2: "2: severe"}
    assert set(meta.variable_to_label) == {"grade"}  # Stata labels whole numbers only
    assert meta.file_label == "A file label" and meta.column_names_to_labels["essay"] == "Essay"
    assert meta.original_variable_types["seen_on"] == "%td"


@pytest.mark.skipif(not shutil.which("pspp-convert"), reason="Debian's pspp is not installed")
def test_pspp_reads_the_sav_as_written(tmp_path):
    out = tmp_path / "t.csv"
    subprocess.run(["pspp-convert", str(write(tmp_path, SavWriter, "sav")), str(out)], check=True, timeout=60)
    rows = list(csv.reader(out.open(encoding="utf-8")))
    assert rows[0] == [v.name for v in VARIABLES]
    assert rows[1][:5] == ["1.25", "1", "01/01/1970", "M", "osteolytic"]
    assert rows[1][5] == LONG and rows[1][6] == HUGE  # the very long strings, joined from their segments
    assert rows[2][2] == "01/08/2022" and rows[3][5] == ROWS[2][5]


def test_names_alike_in_their_first_eight_characters_stay_apart(tmp_path):
    # "notes_te" is what the first 8 characters of the very long "notes_text" give, and "notes1" what
    # its second segment is named after the stem: each dictionary name must stay unique (PSPP renames
    # a duplicate to VAR001 and loses the long name)
    names = ["notes_text", "notes_te", "NOTES_TEXT2", "notes1", "v1"]
    variables = [Variable(n, n, STRING, width=600 if n == "notes_text" else 3) for n in names]
    row = ["x" * 600, "a", "b", "c", "d"]
    path = tmp_path / "names.sav"
    with open(path, "wb") as out:
        w = SavWriter(out, variables, 1, "", WHEN)
        w.write([Cells.of([value]) for value in row])
        w.close()
    frame, _ = pyreadstat.read_sav(str(path))
    assert list(frame.columns) == names and frame.iloc[0].tolist() == row
    if shutil.which("pspp-convert"):
        out = subprocess.run(
            ["pspp-convert", str(path), str(tmp_path / "names.csv")], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0 and not out.stderr, out.stderr
        assert list(csv.reader((tmp_path / "names.csv").open(encoding="utf-8")))[:2] == [names, row]


def test_a_file_without_rows_is_read_as_empty_with_its_variables(tmp_path):
    for writer, suffix, read in ((SavWriter, "sav", pyreadstat.read_sav), (DtaWriter, "dta", pyreadstat.read_dta)):
        frame, _ = read(str(write(tmp_path, writer, suffix, chunks=([],))))
        assert len(frame) == 0 and list(frame.columns) == [v.name for v in VARIABLES], suffix


def test_more_or_fewer_rows_than_declared_is_refused(tmp_path):
    for writer in (SavWriter, DtaWriter):
        with open(tmp_path / "x", "wb") as out:
            w = writer(out, VARIABLES, 5, "", WHEN)
            w.write(columns(ROWS))
            with pytest.raises(ValueError, match="3 rows written, 5 declared"):
                w.close()


texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=300)
numbers = st.one_of(st.just(math.nan), st.floats(-DOUBLE_MAX, DOUBLE_MAX, width=64))


def test_a_number_neither_file_can_store_is_refused_with_its_variable(tmp_path):
    for writer in (SavWriter, DtaWriter):
        for value in (math.inf, -math.inf, 1e308, -1.7976931348623157e308):
            with open(tmp_path / "x", "wb") as out:
                w = writer(out, [Variable("dose", "Dose", NUMBER)], 1, "", WHEN)
                with pytest.raises(ValueError, match=r"dose: .* beyond what SPSS and Stata store"):
                    w.write([np.array([value])])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(numbers, texts), min_size=1, max_size=12))
def test_any_text_and_number_round_trip_through_both_readers(tmp_path, rows):
    width = max(len(t.encode()) for _, t in rows)
    variables = [Variable("x", "X", NUMBER), Variable("t", "T", STRING, width=width)]
    for writer, suffix, read in ((SavWriter, "sav", pyreadstat.read_sav), (DtaWriter, "dta", pyreadstat.read_dta)):
        path = tmp_path / f"h.{suffix}"
        with open(path, "wb") as out:
            w = writer(out, variables, len(rows), "", WHEN)
            w.write([np.array([r[0] for r in rows], dtype=np.float64), Cells.of([r[1] for r in rows])])
            w.close()
        frame, _ = read(str(path))
        for i, (x, t) in enumerate(rows):
            assert same(frame["x"].iloc[i], x), (suffix, i)
            # SPSS pads strings with spaces and its readers drop trailing ones
            expected = t.rstrip(" ") if suffix == "sav" else t
            assert frame["t"].iloc[i] == expected, (suffix, i)
