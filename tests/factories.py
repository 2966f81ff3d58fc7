"""factory-boy factories for every model; one file, as the house style asks."""

import datetime
from decimal import Decimal

import factory

from accounts.models import Site, User
from outcomes.models import FollowUp, Medication
from patients.models import Consent, ConsentVersion, Patient
from procedures.models import Complication, Leakage, Procedure

PASSWORD = "correct-horse-battery"


class SiteFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Site
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"S{n}")
    name = factory.LazyAttribute(lambda o: f"Hospital {o.code}")


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password(PASSWORD)
    role = User.Role.NURSE


class ConsentVersionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ConsentVersion
        django_get_or_create = ("version",)

    version = "1.0"
    effective_from = datetime.date(2010, 1, 1)


class PatientFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Patient

    site = factory.SubFactory(SiteFactory, code="PSP")
    study_id = factory.LazyAttributeSequence(lambda o, n: f"{o.site.code}-{n + 1001:04d}")
    enrolment_date = datetime.date(2024, 3, 1)
    full_name = factory.Faker("name")
    mrn = factory.Sequence(lambda n: f"MRN{n:06d}")
    date_of_birth = datetime.date(1960, 5, 17)
    sex = "F"
    primary_tumour = "lung"
    lesion_character = "osteolytic"
    pathological_fracture = False
    denis_zones = "I|II"
    neurological_deficit = False
    symptom_onset_date = datetime.date(2024, 1, 10)
    imaging_date = datetime.date(2024, 2, 20)
    imaging_modality = "ct"
    prior_radiotherapy = False
    prior_chemotherapy = True


class ConsentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Consent

    patient = factory.SubFactory(PatientFactory)
    consent_version = factory.SubFactory(ConsentVersionFactory)
    signed_date = factory.LazyAttribute(lambda o: o.patient.enrolment_date)
    obtained_by = "RN01"
    scope_registry = True
    scope_future_contact = True


class ProcedureFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Procedure

    patient = factory.SubFactory(PatientFactory)
    procedure_number = 1
    procedure_date = factory.LazyAttribute(lambda o: o.patient.enrolment_date + datetime.timedelta(days=2))
    operator = "IR01"
    approach = "interpedicular"
    guidance = "fluoro_biplane"
    anaesthesia = "local"
    needle_gauge = 13
    needle_count = 1
    levels_treated = "S1|S2"
    cement_volume_ml = Decimal("6.0")
    operation_time_min = 45
    technical_success = True
    leakage = False
    admission_date = factory.LazyAttribute(lambda o: o.procedure_date - datetime.timedelta(days=1))
    discharge_date = factory.LazyAttribute(lambda o: o.procedure_date + datetime.timedelta(days=3))


class LeakageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Leakage

    procedure = factory.SubFactory(ProcedureFactory)
    site = "presacral"
    symptomatic = False
    treatment_required = False


class ComplicationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Complication

    procedure = factory.SubFactory(ProcedureFactory)
    onset_date = factory.LazyAttribute(lambda o: o.procedure.procedure_date)
    type = "urinary_retention"
    cirse_grade = 1
    resolved = True


class FollowUpFactory(factory.django.DjangoModelFactory):
    """A completed visit; derived values are computed as the services do."""

    class Meta:
        model = FollowUp

    patient = factory.SubFactory(PatientFactory)
    timepoint = "baseline"
    status = "completed"
    visit_date = factory.LazyAttribute(lambda o: o.patient.enrolment_date)
    vas = Decimal("7.0")

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        visit = model_class(*args, **kwargs)
        visit.compute_derived([])
        visit.save()
        return visit


class MedicationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Medication

    followup = factory.SubFactory(FollowUpFactory)
    drug = "morphine"
    daily_dose = Decimal("30")
