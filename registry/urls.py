from django.contrib import admin
from django.urls import include, path

from accounts import views as account_views
from api.api import api
from outcomes.urls import case_urlpatterns
from patients.urls import urlpatterns as patient_urlpatterns

urlpatterns = [
    path("", account_views.home, name="home"),
    path("accounts/", include("accounts.urls")),
    path("help/", account_views.guide, name="guide"),
    path("help/<slug:role>/", account_views.guide, name="guide_role"),
    # /patients/: the patient app's pages and the case pages built on visits (outcomes) in one
    # namespace; the case pages come last because the patient page matches any study ID.
    path("patients/", include(([*patient_urlpatterns, *case_urlpatterns], "patients"))),
    path("procedures/", include("procedures.urls")),
    path("visits/", include("outcomes.urls")),
    path("dashboard/", include("dashboard.urls")),
    path("exports/", include("exchange.urls")),
    path("audit/", include("oversight.urls")),
    path("", include("selfreport.urls")),
    path("api/tokens/", include("api.urls")),
    path("api/v1/", api.urls),
    path("admin/", admin.site.urls),
]

# A database outage raised outside a view (e.g. saving the session) still gets the 503 page.
handler500 = "registry.middleware.server_error"
