"""Second factor, step-up, session management and password reset (see security_views)."""

from django.urls import path

from . import security_views as views

app_name = "account_security"
urlpatterns = [
    path("", views.overview, name="overview"),
    path("logout-everywhere/", views.logout_everywhere, name="logout_everywhere"),
    path("two-factor/", views.totp_setup, name="totp_setup"),
    path("two-factor/disable/", views.totp_disable, name="totp_disable"),
    path("two-factor/recovery-codes/", views.recovery_codes, name="recovery_codes"),
    path("verify/", views.verify, name="verify"),
    path("step-up/", views.step_up, name="step_up"),
    path("password-reset/", views.password_reset, name="password_reset"),
    path("password-reset/sent/", views.password_reset_done, name="password_reset_done"),
    path(
        "password-reset/<uidb64>/<token>/",
        views.password_reset_confirm,
        name="password_reset_confirm",
    ),
]
