"""Reads of patients: who a user may open, and the patient search."""

from django.db.models import Min, Q, QuerySet
from django.shortcuts import get_object_or_404

from accounts.models import User
from accounts.permissions import scope_to_sites
from patients.models import Patient


def with_index_date(queryset: QuerySet[Patient]) -> QuerySet[Patient]:
    """Annotate the date of procedure 1 (through the reverse relation: patients does not import procedures)."""
    return queryset.annotate(index_date=Min("procedures__procedure_date", filter=Q(procedures__procedure_number=1)))


def patients_for(user: User) -> QuerySet[Patient]:
    """Every patient the user may open; anything else is a 404."""
    return scope_to_sites(Patient.objects.all(), user)


def search_patients(user: User, query: str = "") -> QuerySet[Patient]:
    patients = with_index_date(patients_for(user).select_related("site"))
    query = query.strip()
    if query:
        patients = patients.filter(
            Q(study_id__icontains=query) | Q(mrn__icontains=query) | Q(full_name__icontains=query)
        )
    return patients.order_by("study_id")


def get_patient_for_user(user: User, study_id: str) -> Patient:
    """The patient if the user's sites include it; 404 otherwise, so other sites' IDs are not confirmed."""
    return get_object_or_404(patients_for(user), study_id=study_id)
