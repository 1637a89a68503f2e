from django.apps import AppConfig


class SecuritycoreConfig(AppConfig):
    name = "carevault.web.securitycore"
    label = "securitycore"

    def ready(self) -> None:
        # Imported here, not at the top: an app's models may only be imported once the app
        # registry is ready.
        from carevault.web.audit import log
        from carevault.web.vault import context

        from . import scorer, scoring, write_risk

        scorer.check_mode()
        # Events stored pending after commit go to this process's background scorer.
        scoring.register_queue(scorer.submit_on_commit)

        # Every audited action is offered to the security layer once it is written: the kinds
        # that gate an attacker inside the action's transaction (their answer must stop the
        # request); every other kind stored pending there and scored in the background once the
        # action commits, or (inline scoring) scored once it commits (see scoring.py).
        log.add_observer(scoring.observe_gating, when=log.IN_TRANSACTION)
        log.add_observer(scoring.observe_committed, when=log.AFTER_COMMIT)
        # Every write's context asks the security layer for its session's risk and the host's
        # load, and every encryption decision for the raised floor.
        context.register_risk_source(write_risk.SecurityRiskSource())
