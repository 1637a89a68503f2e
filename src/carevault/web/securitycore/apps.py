from django.apps import AppConfig


class SecuritycoreConfig(AppConfig):
    name = "carevault.web.securitycore"
    label = "securitycore"

    def ready(self) -> None:
        # Every audited action is offered to the security layer once it is written.
        from carevault.web.audit import log

        from . import scoring

        log.add_observer(scoring.observe)
