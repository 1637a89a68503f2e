from django.apps import AppConfig


class SharedStateConfig(AppConfig):
    name = "carevault.web.sharedstate"
    label = "sharedstate"
