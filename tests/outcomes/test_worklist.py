"""The nurse's worklist, computed in SQL, against an independent Python oracle and hand-worked dates."""

import datetime
import random

import pytest
from django.core.paginator import Paginator
from django.urls import reverse

from outcomes import selectors
from outcomes.models import FollowUp
from patients.models import Consent, Patient
from registry.dates import today as registry_today
from registry.scoring import VISIT_WINDOWS, visit_window
from tests.factories import ConsentFactory, FollowUpFactory, PatientFactory, ProcedureFactory

pytestmark = pytest.mark.django_db
DAY = datetime.timedelta(days=1)


def everything(result: selectors.Worklist) -> list[selectors.DueVisit]:
    return result.visits[0 : result.visits.count()]


def oracle(site_ids: set[int], today: datetime.date) -> tuple[set[tuple], set[str]]:
    """Due visits and awaiting patients from plain rows and the rules in words, with visit_window.

    In follow-up: alive; follow-up not ended; no consent of hers was withdrawn with "remove data"; no visit
    says deceased or withdrawn; the latest consent (signed date, then id) is not
    withdrawn from new data. Visits are listed only when that latest consent allows
    registry use; patients without procedure 1 are awaiting it."""
    due, awaiting = set(), set()
    for p in Patient.objects.filter(site_id__in=site_ids):
        consents = sorted(
            Consent.objects.filter(patient=p).values_list("signed_date", "id", "scope_registry", "withdrawal_scope")
        )
        visits = dict(FollowUp.objects.filter(patient=p).values_list("timepoint", "status"))
        if p.death_date or p.follow_up_ended or any(c[3] == "remove_data" for c in consents):
            continue
        if any(status in ("deceased", "withdrawn") for status in visits.values()):
            continue
        latest = consents[-1] if consents else None
        if latest and latest[3] in ("no_new_data", "remove_data"):
            continue
        index = p.procedures.filter(procedure_number=1).values_list("procedure_date", flat=True).first()
        if index is None:
            awaiting.add(p.study_id)
            continue
        if not (latest and latest[2]):
            continue
        for timepoint in VISIT_WINDOWS:
            opens, closes = visit_window(timepoint, index)
            if timepoint in visits or opens > today + 14 * DAY:
                continue
            if closes < today:
                group = "overdue"
            elif opens <= today:
                group = "today"
            elif opens <= today + 7 * DAY:
                group = "week"
            else:
                group = "later"
            due.add((p.study_id, timepoint, opens, closes, group))
    return due, awaiting


def random_cohort(rng: random.Random, sites, n: int, today: datetime.date) -> None:
    for _ in range(n):
        site = rng.choice(sites)
        enrol = today - rng.randint(0, 500) * DAY
        patient = PatientFactory(site=site, enrolment_date=enrol)
        signed = enrol
        for _ in range(rng.choice([0, 1, 1, 1, 2, 3])):
            consent = ConsentFactory(patient=patient, signed_date=signed, scope_registry=rng.random() > 0.1)
            if rng.random() < 0.3:
                scope = rng.choice(["no_new_data", "remove_data", "no_contact"])
                Consent.objects.filter(pk=consent.pk).update(withdrawn_date=signed, withdrawal_scope=scope)
            signed = min(today, signed + rng.choice([0, 3, 40]) * DAY)  # same-day re-consents: the id decides
        if rng.random() < 0.15:
            continue  # awaiting the procedure
        index = min(today, enrol + rng.randint(0, 10) * DAY)
        ProcedureFactory(patient=patient, procedure_date=index)
        for timepoint, (low, _high) in VISIT_WINDOWS.items():
            if index + low * DAY <= today and rng.random() < 0.4:
                status = rng.choice(["completed"] * 8 + ["missed", "lost", "deceased", "withdrawn"])
                FollowUpFactory(
                    patient=patient, timepoint=timepoint, status=status, visit_date=min(today, index + low * DAY)
                )
        if rng.random() < 0.1:
            Patient.objects.filter(pk=patient.pk).update(death_date=today)


@pytest.mark.parametrize("seed", [1, 2])
def test_the_sql_worklist_equals_the_rules_applied_in_python_on_a_random_cohort(nurse, site, other_site, seed):
    today = registry_today()
    random_cohort(random.Random(seed), [site, other_site], 80, today)
    expected_due, expected_awaiting = oracle({site.pk}, today)
    assert len(expected_due) > 20 and expected_awaiting  # the cohort exercises the rules

    result = selectors.worklist(nurse, today)
    got = {(v.study_id, v.timepoint, v.opens, v.closes, v.group) for v in everything(result)}

    assert got == expected_due
    assert result.counts == {g: sum(1 for d in expected_due if d[4] == g) for g in selectors.GROUPS}
    assert {p.study_id for p in result.awaiting_procedure} == expected_awaiting
    assert result.awaiting_total == len(expected_awaiting)


def test_groups_dates_and_order_by_hand(nurse, site):
    today = datetime.date(2026, 6, 15)
    for days_ago, name in ((30, "A"), (18, "B"), (10, "C")):
        p = PatientFactory(
            site=site, full_name=name, enrolment_date=today - (days_ago + 1) * DAY, study_id=f"PSP-{name}"
        )
        ConsentFactory(patient=p)
        ProcedureFactory(patient=p, procedure_date=today - days_ago * DAY)
        for tp in ("baseline", "post"):
            FollowUpFactory(patient=p, timepoint=tp, visit_date=today - days_ago * DAY)

    rows = [(v.study_id, v.timepoint, v.opens, v.closes, v.group) for v in everything(selectors.worklist(nurse, today))]

    # A: procedure 16 May; w1 window 21-26 May closed; m1 6-30 Jun open.
    # B: procedure 28 May; w1 2-7 Jun closed (overdue since 7 Jun, more recent: listed first); m1 opens 18 Jun (this week).
    # C: procedure 5 Jun; w1 10-15 Jun closes today (due today, before A's m1 which closes later); m1 opens 26 Jun (later).
    assert rows == [
        ("PSP-B", "w1", datetime.date(2026, 6, 2), datetime.date(2026, 6, 7), "overdue"),
        ("PSP-A", "w1", datetime.date(2026, 5, 21), datetime.date(2026, 5, 26), "overdue"),
        ("PSP-C", "w1", datetime.date(2026, 6, 10), datetime.date(2026, 6, 15), "today"),
        ("PSP-A", "m1", datetime.date(2026, 6, 6), datetime.date(2026, 6, 30), "today"),
        ("PSP-B", "m1", datetime.date(2026, 6, 18), datetime.date(2026, 7, 12), "week"),
        ("PSP-C", "m1", datetime.date(2026, 6, 26), datetime.date(2026, 7, 20), "later"),
    ]


def treated(site, days_ago: int) -> Patient:
    today = registry_today()
    p = PatientFactory(site=site, enrolment_date=today - (days_ago + 1) * DAY)
    ConsentFactory(patient=p)
    ProcedureFactory(patient=p, procedure_date=today - days_ago * DAY)
    return p


def test_the_page_groups_counts_filters_and_pages_with_a_fixed_query_count(
    client, nurse, site, django_assert_num_queries, django_assert_max_num_queries
):
    client.force_login(nurse)
    url = reverse("patients:worklist")
    for _ in range(20):
        treated(site, 30)  # post, w1 overdue; m1 due today; baseline overdue
    with django_assert_num_queries(2):  # the group counts with the first page (one statement), the awaiting list
        first = list(Paginator(selectors.worklist(nurse).visits, selectors.PAGE_SIZE).get_page(1))
    assert len(first) == selectors.PAGE_SIZE
    later = Paginator(selectors.worklist(nurse).visits, 5)
    with django_assert_num_queries(1):  # a later page is one more
        assert len(list(later.get_page(2))) == 5
    with django_assert_max_num_queries(20) as few:  # the page: session, user, sites, the worklist, other panels
        client.get(url)
    for _ in range(40):  # both sizes fill more than a page of visits and of overdue ones
        treated(site, 30)
    with django_assert_num_queries(len(few.captured_queries)):
        page = client.get(url).content.decode()

    assert "Due (window opens – closes)" in page and "Opens " not in page
    assert "240 visits to do" in page and "page 1 of 5" in page  # 60 patients x (baseline, post, w1, m1)
    assert 'id="section-overdue"' in page and 'id="section-today"' not in page  # page 1: 50 of the 180 overdue
    today_only = client.get(url, {"group": "today"}).content.decode()
    assert "60 visits to do" in today_only and today_only.count("Record visit") == 50
    last = client.get(url, {"group": "today", "page": 2}).content.decode()
    assert last.count("Record visit") == 10 and "Page 2 of 2" in last
    m1 = client.get(url, {"timepoint": "m1"}).content.decode()
    assert "60 visits to do" in m1 and "<td>1 week</td>" not in m1 and "<td>1 month</td>" in m1


def test_a_site_filter_outside_the_nurses_sites_is_refused_with_a_message(client, nurse, site, other_site):
    treated(other_site, 30)
    client.force_login(nurse)
    response = client.get(reverse("patients:worklist"), {"site": other_site.pk})
    assert response.status_code == 400
    assert "Site:" in response.content.decode() and other_site.code + "-" not in response.content.decode()
    assert client.get(reverse("patients:worklist"), {"site": site.pk}).status_code == 200


def test_patients_awaiting_their_procedure_are_listed_capped_with_their_total(client, nurse, site, settings):
    for i in range(selectors.AWAITING_CAP + 3):
        p = PatientFactory(site=site, enrolment_date=registry_today() - (i + 1) * DAY)
        if i:
            ConsentFactory(patient=p)
    client.force_login(nurse)
    page = client.get(reverse("patients:worklist")).content.decode()
    assert page.count("Record procedure") + page.count("Consent needed") == selectors.AWAITING_CAP
    assert f"of {selectors.AWAITING_CAP + 3}" in page
    assert "Consent needed" not in page  # the one without consent was enrolled most recently: not in the 50 oldest


@pytest.mark.parametrize("seed", [3, 4])
def test_the_portable_worklist_of_the_sqlite_demo_equals_the_sql_one_in_content_and_order(
    nurse, site, other_site, seed
):
    today = registry_today()
    random_cohort(random.Random(seed), [site, other_site], 60, today)
    for kwargs in ({}, {"group": selectors.OVERDUE}, {"timepoint": "m3"}, {"site_id": site.pk}):
        sql = selectors.worklist(nurse, today, **kwargs)
        portable = selectors.portable_worklist(
            nurse, today, **{"site_id": None, "timepoint": None, "group": None, **kwargs}
        )
        assert everything(sql) == list(portable.visits)  # same visits, same order
        assert sql.counts == portable.counts
        assert (sql.awaiting_procedure, sql.awaiting_total) == (portable.awaiting_procedure, portable.awaiting_total)
