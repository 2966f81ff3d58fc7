from django.urls import path

from procedures import views

app_name = "procedures"
urlpatterns = [
    path("new/<str:study_id>/", views.create, name="create"),
    path("<int:pk>/edit/", views.edit, name="edit"),
]
