from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "carevault.web.jobs"
    label = "jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The layers below the task queue (the vault's re-encryption, the audit sealer) hand
        # their background work to it through the hooks they expose (no upward import).
        from . import hooks

        hooks.install()
