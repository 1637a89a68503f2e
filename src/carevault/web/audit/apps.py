from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "carevault.web.audit"
    label = "audit"
