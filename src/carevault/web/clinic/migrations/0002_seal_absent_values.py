"""Seal the empty optional PHI columns as an authenticated "absent" (see vault/absent.py)."""

from typing import Any

from django.db import migrations

from carevault.web.vault.absent import seal_empty_columns


def seal(apps: Any, schema_editor: Any) -> None:
    seal_empty_columns(apps, "clinic", "Patient", ("email", "phone", "address"), "pk")
    seal_empty_columns(apps, "clinic", "Appointment", ("reason",), "patient_id")


class Migration(migrations.Migration):
    dependencies = [("clinic", "0001_initial"), ("vault", "0002_encryption_decisions")]

    operations = [migrations.RunPython(seal, migrations.RunPython.noop)]
