from django.apps import AppConfig


class SecuritycoreConfig(AppConfig):
    name = "carevault.web.securitycore"
    label = "securitycore"

    def ready(self) -> None:
        # Every audited action is offered to the security layer once it is written: the kinds
        # that gate an attacker inside the action's transaction (their answer must stop the
        # request), every other kind once the action commits (see scoring.py).
        from carevault.web.audit import log

        from . import scoring

        log.add_observer(scoring.observe_gating, when=log.IN_TRANSACTION)
        log.add_observer(scoring.observe_committed, when=log.AFTER_COMMIT)
