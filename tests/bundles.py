"""Synthetic CSV bundles that follow every CRF rule but are messy the way real
registries are: several sites, deaths, withdrawals of each scope, missed
visits, skipped ODI sections, buprenorphine, repeat procedures, formula-like
free text. `write_bundle(folder, patients=..., seed=...)` writes one.
"""

import csv
import datetime
import random
from pathlib import Path

from exchange import dictionary
from registry.scoring import VISIT_WINDOWS

SITES = [("BJ", "Beijing General"), ("SH", "Shanghai East"), ("GZ", "Guangzhou South")]
VERSIONS = [("1.0", "2015-01-01", "2019-12-31"), ("2.0", "2020-01-01", "")]
TUMOURS = ["lung", "liver", "breast", "prostate", "kidney", "thyroid", "myeloma", "colorectal", "other"]
LEVELS = ["L5", "S1", "S2", "S3", "S4", "S5", "coccyx"]
APPROACHES = ["interpedicular", "short_axis", "long_axis", "transiliac", "anterior_oblique"]
DRUGS = ["morphine", "oxycodone", "tramadol", "codeine", "fentanyl_td", "hydromorphone", "buprenorphine", "tapentadol"]
LEAK_SITES = ["presacral", "foraminal", "sacral_canal", "venous", "si_joint"]
TODAY = datetime.date(2026, 11, 1)


def _d(day: datetime.date | None) -> str:
    return day.isoformat() if day else ""


def _yn(flag: bool) -> str:
    return "yes" if flag else "no"


def generate(patients: int = 60, seed: int = 7) -> dict[str, list[dict[str, str]]]:
    rng = random.Random(seed)
    rows: dict[str, list[dict[str, str]]] = {name: [] for name in dictionary.FILES}
    rows["sites"] = [{"code": c, "name": n} for c, n in SITES]
    rows["consent_versions"] = [{"version": v, "effective_from": f, "effective_to": t} for v, f, t in VERSIONS]
    counters = {code: 0 for code, _ in SITES}
    for i in range(patients):
        site = rng.choice(SITES)[0]
        counters[site] += 1
        study_id = f"{site}-{counters[site]:04d}"
        enrol = datetime.date(2016, 1, 1) + datetime.timedelta(days=rng.randrange(0, 3400))
        age = rng.choice([rng.randint(30, 85), rng.randint(86, 97)])
        dob = enrol - datetime.timedelta(days=int(age * 365.25) + rng.randrange(1, 300))
        tumour = rng.choice(TUMOURS)
        index_date = enrol + datetime.timedelta(days=rng.randint(0, 5))
        death = index_date + datetime.timedelta(days=rng.randint(20, 500)) if rng.random() < 0.25 else None
        if death and death > TODAY:
            death = None
        rows["patients"].append(
            {
                "study_id": study_id,
                "site": site,
                "enrolment_date": _d(enrol),
                "full_name": f"Patient {i} Testname",
                "mrn": f"{site}{100000 + i}",
                "date_of_birth": _d(dob),
                "age_at_enrolment": "",
                "sex": rng.choice("MF"),
                "primary_tumour": tumour,
                "primary_tumour_other": "epithelioid angiosarcoma" if tumour == "other" else "",
                "lesion_character": rng.choice(["osteolytic", "osteoblastic", "mixed"]),
                "pathological_fracture": _yn(rng.random() < 0.4),
                "denis_zones": rng.choice(["I", "I|II", "II|III", "III", "I|II|III"]),
                "neurological_deficit": _yn(rng.random() < 0.1),
                "symptom_onset_date": _d(index_date - datetime.timedelta(days=rng.randint(10, 300))),
                "imaging_date": _d(index_date - datetime.timedelta(days=rng.randint(0, 20))),
                "imaging_modality": rng.choice(["ct", "mri", "both"]),
                "prior_radiotherapy": _yn(rng.random() < 0.5),
                "prior_chemotherapy": _yn(rng.random() < 0.6),
                "ecog": rng.choice(["", "0", "1", "2", "3"]),
                "death_date": _d(death),
                "notes": rng.choice(["", '=HYPERLINK("http://x")', "+1 call family", "stable"]),
            }
        )
        version = "1.0" if enrol.year <= 2019 else "2.0"
        withdrawal = rng.choices(["", "no_contact", "no_new_data", "remove_data"], [70, 10, 10, 10])[0]
        withdrawn = index_date + datetime.timedelta(days=rng.randint(10, 120)) if withdrawal else None
        if withdrawn and (withdrawn > TODAY or (death and withdrawn > death)):
            withdrawal, withdrawn = "", None
        rows["consents"].append(
            {
                "study_id": study_id,
                "consent_version": version,
                "signed_date": _d(enrol),
                "obtained_by": "RN0" + str(rng.randint(1, 4)),
                "scope_registry": "yes",
                "scope_future_contact": _yn(rng.random() < 0.8),
                "document_sha256": "",
                "withdrawn_date": _d(withdrawn),
                "withdrawal_scope": withdrawal,
                "withdrawal_reason": "patient request" if withdrawal else "",
            }
        )
        procedures = [index_date]
        if rng.random() < 0.1 and (not death or death > index_date + datetime.timedelta(days=60)):
            procedures.append(index_date + datetime.timedelta(days=rng.randint(30, 60)))
        for number, when in enumerate(procedures, start=1):
            start = rng.randrange(1, 5)
            levels = LEVELS[start : start + rng.randint(1, 3)]
            leak = rng.random() < 0.3
            rows["procedures"].append(
                {
                    "study_id": study_id,
                    "procedure_number": str(number),
                    "procedure_date": _d(when),
                    "operator": "IR0" + str(rng.randint(1, 3)),
                    "approach": rng.choice(APPROACHES),
                    "guidance": rng.choice(["fluoro_biplane", "ct", "cbct"]),
                    "anaesthesia": rng.choice(["local", "sedation", "general"]),
                    "needle_gauge": rng.choice(["11", "13"]),
                    "needle_count": str(rng.randint(1, 3)),
                    "levels_treated": "|".join(levels),
                    "cement_product": rng.choice(["", "PALACOS V PMMA", "-Osteopal"]),
                    "cement_viscosity": rng.choice(["", "low", "high"]),
                    "cement_volume_ml": f"{rng.randint(10, 150) / 10:.1f}",
                    "operation_time_min": str(rng.randint(25, 120)),
                    "fluoroscopy_time_s": rng.choice(["", str(rng.randint(60, 900))]),
                    "dose_area_product_gycm2": rng.choice(["", f"{rng.randint(100, 9000) / 100:.2f}"]),
                    "ct_dlp_mgycm": rng.choice(["", str(rng.randint(200, 1500))]),
                    "technical_success": _yn(rng.random() < 0.95),
                    "leakage": _yn(leak),
                    "admission_date": _d(when - datetime.timedelta(days=rng.randint(0, 2))),
                    "discharge_date": _d(when + datetime.timedelta(days=rng.randint(0, 9))),
                }
            )
            if leak:
                for leak_site in rng.sample(LEAK_SITES, rng.randint(1, 2)):
                    symptomatic = rng.random() < 0.2
                    rows["leakages"].append(
                        {
                            "study_id": study_id,
                            "procedure_number": str(number),
                            "site": leak_site,
                            "symptomatic": _yn(symptomatic),
                            "treatment_required": _yn(symptomatic and rng.random() < 0.5),
                        }
                    )
            if rng.random() < 0.15:
                kind = rng.choice(["urinary_retention", "nerve_root_injury", "csf_leak", "wound_hematoma", "other"])
                rows["complications"].append(
                    {
                        "study_id": study_id,
                        "procedure_number": str(number),
                        "onset_date": _d(when + datetime.timedelta(days=rng.randint(0, 3))),
                        "type": kind,
                        "severity": rng.choice(["major", "minor"]) if kind in ("csf_leak", "other") else "",
                        "cirse_grade": str(rng.randint(1, 4)),
                        "resolved": _yn(rng.random() < 0.7),
                        "description": "@risk transient" if kind == "other" else "",
                    }
                )
        stopped = False
        for timepoint, (low, high) in VISIT_WINDOWS.items():
            if timepoint == "baseline":  # after consent, on or before the procedure
                low = -(index_date - enrol).days
            day = index_date + datetime.timedelta(days=rng.randint(low, high))
            if day > TODAY:
                break
            status = "completed"
            if death and day > death:
                status = "deceased"
            elif withdrawn and withdrawal in ("no_new_data", "remove_data") and day > withdrawn:
                status = "withdrawn"
            elif rng.random() < 0.1:
                status = rng.choice(["missed", "lost"])
            if stopped:
                break
            stopped = status in ("deceased", "withdrawn", "lost")
            completed = status == "completed"
            answers = [str(rng.randint(0, 5)) for _ in range(10)]
            for skipped in rng.sample(range(10), rng.choice([0, 0, 0, 1, 2])):
                answers[skipped] = ""
            rows["followups"].append(
                {
                    "study_id": study_id,
                    "timepoint": timepoint,
                    "visit_date": _d(day) if completed or status == "missed" else "",
                    "status": status,
                    "vas": f"{rng.randint(0, 100) / 10:.1f}" if completed else "",
                    **{f"odi_q{n + 1}": (answers[n] if completed else "") for n in range(10)},
                    "odi_score": "",
                    "opioid_count": "",
                    "mme_per_day": "",
                    "deviation_note": "",
                }
            )
            if completed:
                for drug in rng.sample(DRUGS, rng.choice([0, 1, 1, 2, 3])):
                    dose = rng.choice([5, 10, 12.5, 20, 25, 40, 100])
                    rows["medications"].append(
                        {"study_id": study_id, "timepoint": timepoint, "drug": drug, "daily_dose": str(dose)}
                    )
    return rows


def write_bundle(folder: Path, patients: int = 60, seed: int = 7) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in generate(patients, seed).items():
        header = [v.name for v in dictionary.variables_for(name)]
        with (folder / f"{name}.csv").open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=header)
            writer.writeheader()
            writer.writerows(data)
    return folder
