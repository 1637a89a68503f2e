from django.apps import AppConfig


class ClinicConfig(AppConfig):
    name = "carevault.web.clinic"
    label = "clinic"
