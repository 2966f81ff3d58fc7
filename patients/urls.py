from django.urls import path

from patients import views

app_name = "patients"
urlpatterns = [
    path("", views.patient_list, name="list"),
    path("worklist/", views.worklist, name="worklist"),
    path("enrol/", views.enrol, name="enrol"),
    path("<str:study_id>/", views.detail, name="detail"),
    path("<str:study_id>/edit/", views.edit, name="edit"),
    path("<str:study_id>/consent/", views.consent, name="consent"),
]
