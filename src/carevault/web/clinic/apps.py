from django.apps import AppConfig


class ClinicConfig(AppConfig):
    name = "carevault.web.clinic"
    label = "clinic"

    def ready(self) -> None:
        # Password reset (login) sends its links to the address on the patient record; login
        # sits below the clinic, so the clinic hands it the lookup instead of being imported.
        from carevault.web.login import recovery

        from .reset_recipients import reset_recipients

        recovery.set_recipients(reset_recipients)
