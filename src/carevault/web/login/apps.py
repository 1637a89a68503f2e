from django.apps import AppConfig


class LoginConfig(AppConfig):
    """Challenges, throttling, the second factor, recovery and sessions. No models of its own:
    the accounts it guards (and their recovery codes) are the accounts app's."""

    name = "carevault.web.login"
    label = "login"

    def ready(self) -> None:
        # signals: the login audit receivers; sessions: stamps every new login session (the
        # client binding the session guard checks).
        from . import sessions, signals  # noqa: F401
