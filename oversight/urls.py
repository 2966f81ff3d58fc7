from django.urls import path

from oversight import views

app_name = "oversight"
urlpatterns = [
    path("", views.index, name="index"),
    path("trail.csv", views.trail_csv, name="trail_csv"),
    path("patients/<str:study_id>/", views.patient_history, name="patient_history"),
    path("patients/<str:study_id>/delete/", views.patient_delete, name="patient_delete"),
    path("records/<str:kind>/<int:pk>/delete/", views.record_delete, name="record_delete"),
    path("consents/", views.consent_register, name="consents"),
    path("consents/register.csv", views.consent_register_csv, name="consents_csv"),
]
