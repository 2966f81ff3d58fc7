from django.urls import path

from dashboard import views

app_name = "dashboard"
urlpatterns = [
    path("", views.index, name="index"),
    path("summary.json", views.summary_json, name="summary_json"),
]
