from django.urls import path

from audit import views

app_name = "audit"
urlpatterns = [
    path("", views.index, name="index"),
    path("trail.csv", views.trail_csv, name="trail_csv"),
    path("patients/<str:study_id>/", views.patient_history, name="patient_history"),
    path("patients/<str:study_id>/delete/", views.patient_delete, name="patient_delete"),
    path("records/<str:kind>/<int:pk>/delete/", views.record_delete, name="record_delete"),
    path("consent-versions/", views.version_list, name="versions"),
    path("consent-versions/new/", views.version_edit, name="version_create"),
    path("consent-versions/<int:pk>/edit/", views.version_edit, name="version_edit"),
    path("consent-versions/<int:pk>/form/", views.version_form_download, name="version_form"),
    path("consents/", views.consent_register, name="consents"),
    path("consents/register.csv", views.consent_register_csv, name="consents_csv"),
    path("consents/<int:pk>/", views.consent_detail, name="consent"),
    path("consents/<int:pk>/document/", views.consent_document, name="consent_document"),
    path("consents/<int:pk>/withdraw/", views.consent_withdraw, name="consent_withdraw"),
]
