from django.urls import path

from outcomes import views

app_name = "outcomes"
urlpatterns = [
    path("<str:study_id>/<str:timepoint>/", views.visit, name="visit"),
]
