"""The local demo runs on SQLite, where the dashboard reads its cohort through the ORM instead of
PostgreSQL's binary COPY: the two paths give the same columns, value for value."""

import numpy as np
import pytest

from dashboard.selectors import cohort_columns, portable_cohort_columns
from tests.dashboard.cohort import make_cohort

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "filters",
    [{}, {"site": "BB"}, {"approach": "interpedicular"}, {"primary_tumour": "lung"}, {"procedure_from": "2019-01-01"}],
)
def test_the_orm_path_gives_the_sql_paths_columns(filters):
    make_cohort(seed=11, patients=40)
    sql, orm = cohort_columns(None, filters), portable_cohort_columns(None, filters)
    assert len(sql) > 0 and list(sql.ids) == list(orm.ids)
    for name in sql.columns.dtype.names:
        assert np.array_equal(sql[name], orm[name], equal_nan=True), name
    assert (sql.excluded_withdrawn, sql.awaiting_consent) == (orm.excluded_withdrawn, orm.awaiting_consent)
