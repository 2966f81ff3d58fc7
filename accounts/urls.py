from django.contrib.auth import views as auth_views
from django.urls import path

from accounts import views

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password/", views.PasswordChangeView.as_view(), name="password_change"),
    path("password/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
    path("language/", views.language, name="set_language"),
    path("two-factor/", views.manage, name="second_factor_manage"),
    path("two-factor/enrol/", views.enrol, name="second_factor_enrol"),
    path("two-factor/verify/", views.verify, name="second_factor_verify"),
    path("two-factor/remove/", views.remove, name="second_factor_remove"),
]
