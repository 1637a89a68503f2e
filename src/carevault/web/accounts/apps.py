from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "carevault.web.accounts"
    label = "accounts"

    def ready(self) -> None:
        from . import signals  # noqa: F401 - connects the login audit receivers
