from django.apps import AppConfig


class LabsConfig(AppConfig):
    name = "carevault.web.labs"
    label = "labs"
