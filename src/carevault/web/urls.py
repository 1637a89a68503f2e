from django.urls import include, path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("accounts/", include("carevault.web.accounts.urls")),
    path("accounts/security/", include("carevault.web.login.security_urls")),
    path("clinic/", include("carevault.web.clinic.urls")),
    path("labs/", include("carevault.web.labs.urls")),
    path("diagnosis/", include("carevault.web.diagnosis.urls")),
    path("security/", include("carevault.web.officer.urls")),
    path("api/v1/", include("carevault.web.api.urls")),
]
