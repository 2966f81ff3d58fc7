from django.urls import path

from oversight import monitoring_views as mv
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
    # study monitoring
    path("monitoring/", mv.monitoring, name="monitoring"),
    path("queries/new/<str:study_id>/", mv.query_raise, name="query_raise"),
    path("queries/<int:pk>/", mv.query_detail, name="query"),
    path("patients/<str:study_id>/verify/", mv.verify, name="verify"),
    path("patients/<str:study_id>/sign/", mv.sign, name="sign"),
    path("patients/<str:study_id>/end-follow-up/", mv.end_follow_up_view, name="end_follow_up"),
    path("locks/<int:pk>/unlock/", mv.unlock, name="unlock"),
    path("visits/close-missed/", mv.close_missed, name="close_missed"),
    path("quality/", mv.quality_page, name="quality"),
    path("quality.csv", mv.quality_csv, name="quality_csv"),
    path("completeness/", mv.completeness_page, name="completeness"),
    path("completeness.json", mv.completeness_json, name="completeness_json"),
]
