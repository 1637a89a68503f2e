"""Sealing the empty optional PHI columns of rows written before every column held a ciphertext.

Used once by data migrations (``clinic 0002``, ``labs 0002``): an optional column left empty is
sealed as the empty string, bound to its table / column / row / patient like any value, so that
from then on an empty column can only mean tampering (see :mod:`carevault.web.vault.phi`).
"""

from __future__ import annotations

from typing import Any

from . import service


def seal_empty_columns(
    apps: Any, app_label: str, model_name: str, columns: tuple[str, ...], patient_field: str
) -> int:
    """Seal "" into each empty ``<column>_enc`` of ``app_label.model_name``; how many were
    sealed. ``patient_field``: the attribute holding the patient's id (``pk`` for patients)."""
    model = apps.get_model(app_label, model_name)
    table = model._meta.db_table
    sealed = 0
    for row in model.objects.all().iterator(chunk_size=500):
        changed = []
        for column in columns:
            if getattr(row, f"{column}_enc"):
                continue
            patient_id = getattr(row, patient_field)
            setattr(row, f"{column}_enc", service.seal(patient_id, table, column, row.pk, ""))
            changed.append(f"{column}_enc")
        if changed:
            row.save(update_fields=changed)
            sealed += len(changed)
    return sealed
