"""Data-quality rules over the cases of some sites.

Each rule yields `Hit`s naming the case, the record and the field, so a hit can
open a query (rule_code = the rule's code). Run on demand from /audit/quality/
and nightly by `manage.py run_quality_rules` (cron, or the task runner).

Thresholds:
- ODI unscored: a completed visit with fewer ODI sections answered than the
  minimum the visit is scored with (its stored `odi_min_sections`, else
  ODI_MIN_SECTIONS).
- Implausible cement volume: below CEMENT_MIN_PER_LEVEL_ML or above
  CEMENT_MAX_PER_LEVEL_ML mL per treated level. Published sacroplasty series
  inject about 2-8 mL per treated sacral level (Tian et al. 2019: 3-8 mL per
  lesion); fewer than 1 mL or more than 10 mL per level is checked at source.
"""

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from outcomes.models import ODI_FIELDS, FollowUp
from oversight.models import DataQuery
from patients.models import Patient
from procedures.models import Procedure
from registry.scoring import visit_window

CEMENT_MIN_PER_LEVEL_ML = Decimal("1.0")
CEMENT_MAX_PER_LEVEL_ML = Decimal("10.0")

RULES = {
    "odi_unscored": gettext_lazy("ODI unscored: fewer sections answered than the visit's minimum"),
    "visit_out_of_window": gettext_lazy("Visit outside its window without a deviation note"),
    "visit_after_death": gettext_lazy("Completed visit after the date of death"),
    "leakage_mismatch": gettext_lazy("Leakage flag disagrees with the leakage rows"),
    "discharge_missing": gettext_lazy("Discharge date missing"),
    "cement_implausible": gettext_lazy("Implausible cement volume for the number of levels"),
    "opioids_unrecorded": gettext_lazy("Completed visit with no opioid row and no 'none' recorded"),
    "baseline_missing": gettext_lazy("Baseline visit missing"),
    "duplicate_mrn": gettext_lazy("Same MRN at another site"),
}


@dataclass(frozen=True)
class Hit:
    rule: str
    site_code: str
    study_id: str
    record_model: str
    record_pk: int
    record_label: str
    field: str
    message: str


def _visit_label(v: FollowUp) -> str:
    """In English, as oversight.services.record_label stores it; the page shows it translated (shown_label)."""
    with translation.override("en"):
        return f"{v.get_timepoint_display().split(' (')[0]} visit"


def _visit_hit(rule: str, v: FollowUp, field: str, message: str) -> Hit:
    return Hit(
        rule, v.patient.site.code, v.patient.study_id, "outcomes.FollowUp", v.pk, _visit_label(v), field, message
    )


def _proc_hit(rule: str, p: Procedure, field: str, message: str) -> Hit:
    label = f"Procedure {p.procedure_number}"
    return Hit(rule, p.patient.site.code, p.patient.study_id, "procedures.Procedure", p.pk, label, field, message)


def run_rules(sites: Iterable[Any]) -> list[Hit]:
    """Every rule's hits over the patients of `sites`, ordered by rule, site and study ID."""
    site_ids = [s.pk for s in sites]
    patients = list(Patient.objects.filter(site_id__in=site_ids).select_related("site"))
    by_pk = {p.pk: p for p in patients}
    procedures = list(Procedure.objects.filter(patient_id__in=by_pk).annotate(n_leak=Count("leakages")))
    visits = list(FollowUp.objects.filter(patient_id__in=by_pk).annotate(n_meds=Count("medications")))
    for row in [*procedures, *visits]:
        row.patient = by_pk[row.patient_id]
    index = {p.patient_id: p.procedure_date for p in procedures if p.procedure_number == 1}
    hits: list[Hit] = []
    completed = [v for v in visits if v.status == FollowUp.Status.COMPLETED]

    for v in completed:
        answered = sum(getattr(v, f) is not None for f in ODI_FIELDS)
        minimum = v.odi_min_sections or settings.ODI_MIN_SECTIONS
        if answered < minimum:
            hits.append(
                _visit_hit(
                    "odi_unscored",
                    v,
                    "odi_score",
                    _("%(answered)s of 10 ODI sections answered; at least %(minimum)s are needed for a score.")
                    % {"answered": answered, "minimum": minimum},
                )
            )
    for v in visits:
        if v.visit_date and v.patient_id in index and not v.deviation_note.strip():
            low, high = visit_window(v.timepoint, index[v.patient_id])
            if not low <= v.visit_date <= high:
                hits.append(
                    _visit_hit(
                        "visit_out_of_window",
                        v,
                        "deviation_note",
                        _("Visit on %(date)s is outside its window %(low)s to %(high)s and has no deviation note.")
                        % {"date": v.visit_date, "low": low, "high": high},
                    )
                )
    for v in completed:
        death = v.patient.death_date
        if death and v.visit_date and v.visit_date > death:
            hits.append(
                _visit_hit(
                    "visit_after_death",
                    v,
                    "visit_date",
                    _("Completed visit on %(date)s, after the date of death %(death)s.")
                    % {"date": v.visit_date, "death": death},
                )
            )
    for p in procedures:
        if p.leakage != (p.n_leak > 0):
            hits.append(
                _proc_hit(
                    "leakage_mismatch",
                    p,
                    "leakage",
                    ngettext(
                        "Leakage is '%(flag)s' but %(n)s leakage row is recorded.",
                        "Leakage is '%(flag)s' but %(n)s leakage rows are recorded.",
                        p.n_leak,
                    )
                    % {"flag": "yes" if p.leakage else "no", "n": p.n_leak},
                )
            )
        if p.discharge_date is None:
            hits.append(_proc_hit("discharge_missing", p, "discharge_date", _("No discharge date.")))
        levels = max(p.lesion_count, 1)
        per_level = Decimal(p.cement_volume_ml) / levels
        if not CEMENT_MIN_PER_LEVEL_ML <= per_level <= CEMENT_MAX_PER_LEVEL_ML:
            hits.append(
                _proc_hit(
                    "cement_implausible",
                    p,
                    "cement_volume_ml",
                    ngettext(
                        "%(volume)s mL for %(levels)s level: %(per_level)s mL per level, outside %(low)s-%(high)s.",
                        "%(volume)s mL for %(levels)s levels: %(per_level)s mL per level, outside %(low)s-%(high)s.",
                        levels,
                    )
                    % {
                        "volume": p.cement_volume_ml,
                        "levels": levels,
                        "per_level": f"{per_level:.1f}",
                        "low": CEMENT_MIN_PER_LEVEL_ML,
                        "high": CEMENT_MAX_PER_LEVEL_ML,
                    },
                )
            )
    for v in completed:
        if v.n_meds == 0 and not v.no_opioids:
            hits.append(
                _visit_hit("opioids_unrecorded", v, "no_opioids", _("No opioid recorded and 'no opioids' not ticked."))
            )
    with_baseline = {v.patient_id for v in visits if v.timepoint == "baseline"}
    for patient_id in index:
        if patient_id not in with_baseline:
            p = by_pk[patient_id]
            hits.append(
                Hit(
                    "baseline_missing",
                    p.site.code,
                    p.study_id,
                    "patients.Patient",
                    p.pk,
                    "Patient",
                    "study_id",
                    _("No baseline visit recorded."),
                )
            )
    # Duplicate MRN across sites: compared over every site, reported for the sites asked about.
    owners: dict[str, list[tuple[int, str, int]]] = defaultdict(list)
    for pk, mrn, site_id, study_id in Patient.objects.values_list("pk", "mrn", "site_id", "study_id"):
        key = "".join(mrn.split()).upper()
        owners[key].append((pk, study_id, site_id))
    for rows in owners.values():
        if len({site for _, _, site in rows}) < 2:
            continue
        for pk, study_id, site_id in rows:
            if pk in by_pk:
                others = ", ".join(sorted(s for q, s, site in rows if site != site_id))
                p = by_pk[pk]
                hits.append(
                    Hit(
                        "duplicate_mrn",
                        p.site.code,
                        study_id,
                        "patients.Patient",
                        pk,
                        "Patient",
                        "mrn",
                        _("The same MRN is recorded at another site: %(sites)s.") % {"sites": others},
                    )
                )
    order = list(RULES)
    return sorted(hits, key=lambda h: (order.index(h.rule), h.site_code, h.study_id, h.record_label))


def counts_by_site(hits: Iterable[Hit]) -> list[dict[str, Any]]:
    """One row per site: hits per rule (every rule, zeros included) and the total."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for h in hits:
        counts[h.site_code][h.rule] += 1
    return [
        {"site": site, "rules": [c[r] for r in RULES], "total": sum(c.values())} for site, c in sorted(counts.items())
    ]


def open_queries(hits: Iterable[Hit], *, user: Any = None) -> int:
    """Open a query for each hit that has no open query of the same rule on the same value; the number opened."""
    from oversight import services

    opened = 0
    for h in hits:
        exists = DataQuery.objects.filter(
            rule_code=h.rule, record_model=h.record_model, record_pk=h.record_pk, field=h.field
        ).exclude(state=DataQuery.State.CLOSED)
        if exists.exists():
            continue
        record = services.load_record(h.record_model, h.record_pk)
        try:
            with transaction.atomic():
                services.raise_query(record=record, field=h.field, question=h.message, user=user, rule_code=h.rule)
        except IntegrityError:  # raised meanwhile by a concurrent run
            continue
        opened += 1
    return opened
