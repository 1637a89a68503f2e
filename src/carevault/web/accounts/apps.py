from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "carevault.web.accounts"
    label = "accounts"

    def ready(self) -> None:
        # signals: the login audit receivers; sessions: stamps every new login session (the
        # client binding the session guard checks).
        from . import sessions, signals  # noqa: F401
