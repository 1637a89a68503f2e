from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "carevault.web.api"
    label = "api"
