from django.apps import AppConfig


class SecurityopsConfig(AppConfig):
    name = "carevault.web.securityops"
    label = "securityops"
