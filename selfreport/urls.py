from django.urls import path

from selfreport import views

app_name = "selfreport"
urlpatterns = [
    path("r/<str:token>/", views.patient, name="patient"),
    path("selfreport/send/", views.send, name="send"),
    path("selfreport/links/", views.links, name="links"),
    path("selfreport/links/<int:pk>/revoke/", views.revoke, name="revoke"),
    path("selfreport/reports/<int:pk>/", views.review, name="review"),
    path("selfreport/notifications/", views.preferences, name="preferences"),
]
