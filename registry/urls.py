from django.contrib import admin
from django.urls import include, path

from accounts import views as account_views

urlpatterns = [
    path("", account_views.home, name="home"),
    path("accounts/", include("accounts.urls")),
    path("patients/", include("patients.urls")),
    path("procedures/", include("procedures.urls")),
    path("visits/", include("outcomes.urls")),
    path("dashboard/", include("dashboard.urls")),
    path("exports/", include("exchange.urls")),
    path("audit/", include("audit.urls")),
    path("admin/", admin.site.urls),
]
