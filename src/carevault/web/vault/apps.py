from django.apps import AppConfig


class VaultConfig(AppConfig):
    name = "carevault.web.vault"
    label = "vault"
