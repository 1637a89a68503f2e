from django.contrib.auth import views as auth_views
from django.urls import include, path

from carevault.web.clinic import registration_views
from carevault.web.login import views as login_views

from . import views

# The account pages of the "accounts" namespace (/accounts/...): signing in (login), signing up
# (the clinic's patient self-registration). Named here, above both apps, so neither imports the
# other for its URLs.
account_urls = (
    [
        # Credentials arrive only as encrypted login packets (login/views.py); GET only.
        path("login/", login_views.login_page, name="login"),
        path("login/challenge/", login_views.login_challenge, name="login_challenge"),
        path("login/packet/", login_views.login_packet, name="login_packet"),
        path("logout/", auth_views.LogoutView.as_view(), name="logout"),
        path("register/", registration_views.register, name="register"),
    ],
    "accounts",
)

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("accounts/", include(account_urls)),
    path("accounts/security/", include("carevault.web.login.security_urls")),
    path("clinic/", include("carevault.web.clinic.urls")),
    path("labs/", include("carevault.web.labs.urls")),
    path("diagnosis/", include("carevault.web.diagnosis.urls")),
    path("security/", include("carevault.web.officer.urls")),
    path("api/v1/", include("carevault.web.api.urls")),
]
