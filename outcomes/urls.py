from django.urls import path

from outcomes import views

app_name = "outcomes"
urlpatterns = [
    path("<str:study_id>/<str:timepoint>/", views.visit, name="visit"),
]

# Pages that combine a whole case, served under /patients/ in the `patients`
# namespace (the root URLconf joins them with patients.urls).
case_urlpatterns = [
    path("worklist/", views.worklist, name="worklist"),
    path("<str:study_id>/", views.detail, name="detail"),
]
