"""Seal the empty optional PHI columns as an authenticated "absent" (see vault/absent.py)."""

from typing import Any

from django.db import migrations

from carevault.web.vault.absent import seal_empty_columns


def seal(apps: Any, schema_editor: Any) -> None:
    seal_empty_columns(apps, "labs", "LabRequest", ("notes",), "patient_id")
    seal_empty_columns(apps, "labs", "LabResult", ("comment",), "patient_id")


class Migration(migrations.Migration):
    dependencies = [
        ("labs", "0001_initial"),
        ("clinic", "0002_seal_absent_values"),
        ("vault", "0002_encryption_decisions"),
    ]

    operations = [migrations.RunPython(seal, migrations.RunPython.noop)]
