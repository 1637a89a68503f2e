from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "carevault.web.accounts"
    label = "accounts"

    def ready(self) -> None:
        # (Imported here, not at the top: models can be imported only once the apps are loaded.)
        from carevault.web.vault import keystore

        from .models import User

        # Users' TOTP secrets are wrapped by the master key: rotation rewraps them with the rest.
        keystore.register(
            keystore.WrappedColumn(
                "totp",
                User,
                "id",
                "totp_wrapped",
                lambda ident: {"purpose": "totp", "user": ident},
                optional=True,
            )
        )
