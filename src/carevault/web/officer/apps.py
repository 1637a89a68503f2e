from django.apps import AppConfig


class OfficerConfig(AppConfig):
    """The security officer's pages (no models: it reads and acts through the other apps)."""

    name = "carevault.web.officer"
    label = "officer"
