from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "carevault.web.accounts"
    label = "accounts"
