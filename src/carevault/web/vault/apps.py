from django.apps import AppConfig


class VaultConfig(AppConfig):
    name = "carevault.web.vault"
    label = "vault"

    def ready(self) -> None:
        # (Imported here: models can be imported only once the apps are loaded.)
        from carevault.web.audit import keys

        from .audit_keys import VaultAuditKeys

        # The audit log is kept with the vault's keys; it sits below the vault (the vault's key
        # jobs are audited), so the vault hands them over instead of being imported.
        keys.register(VaultAuditKeys())
