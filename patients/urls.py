from django.urls import path

from patients import views

app_name = "patients"
urlpatterns = [
    path("", views.patient_list, name="list"),
    path("consent-versions/", views.version_list, name="versions"),
    path("consent-versions/new/", views.version_edit, name="version_create"),
    path("consent-versions/<int:pk>/edit/", views.version_edit, name="version_edit"),
    path("consent-versions/<int:pk>/form/", views.version_form_download, name="version_form"),
    path("consents/<int:pk>/", views.consent_detail, name="consent_record"),
    path("consents/<int:pk>/document/", views.consent_document, name="consent_document"),
    path("consents/<int:pk>/withdraw/", views.consent_withdraw, name="consent_withdraw"),
    path("enrol/", views.enrol, name="enrol"),
    path("<str:study_id>/edit/", views.edit, name="edit"),
    path("<str:study_id>/consent/", views.consent, name="consent"),
]
