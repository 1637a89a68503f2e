from django.apps import AppConfig


class DiagnosisConfig(AppConfig):
    name = "carevault.web.diagnosis"
    label = "diagnosis"
