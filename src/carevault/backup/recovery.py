"""After a restore, and after an incident: walking every record, and putting back what an
incident's actor changed (Django; imported by the command line once Django is set up).

Recovery after an incident: the incident's subjects name its actor (``account:<name>``,
``address:<ip>``). Every audit entry of that actor *after the backup's last audit entry* that
targets a record holding PHI names a touched record. The backup's own audit log draws the line,
not its timestamp: the manifest's time is to the second, and what was written in that second
before the snapshot is in the backup. Each touched record that differs from its copy in
the backup gets the backup's values back (all its columns, sealed values included: they are
bound to the same row and patient, so they still open), checked to decrypt before the
transaction commits, and audited as ``backup.record_restored``. Nothing else is rolled back.
Records the actor created after the backup are listed, not deleted: that is the officer's call.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.core.exceptions import ValidationError
from django.db import connections, models, transaction

from carevault.crypto import CryptoError

from .archive import BackupError
from .snapshot import _libpq_url, _psql, restore_postgres

if TYPE_CHECKING:
    from carevault.web.vault.phi import PhiModel

ALIAS = "carevault_backup"


def phi_models() -> list[type[PhiModel]]:
    from carevault.web.vault.phi import PhiModel

    return [m for m in apps.get_models() if issubclass(m, PhiModel)]


# -- walking every record -------------------------------------------------------------------------


@dataclass
class CheckReport:
    values: int = 0
    failed_values: int = 0
    signed: int = 0
    failed_signatures: int = 0
    signing_keys: int = 0
    failed_signing_keys: int = 0
    files: int = 0
    by_model: dict[str, int] = field(default_factory=dict)
    # Which records fail ("<model> <pk> <column>" or "<model> <pk> signature"), so the officer
    # knows what to restore: the walk names them, the count alone does not.
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            not self.failed_values and not self.failed_signatures and not self.failed_signing_keys
        )

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "ok": self.ok}


def check_all() -> CheckReport:
    """Decrypt every sealed value, verify every signed record and every stored lab file."""
    from carevault.web.clinic.actions import SignatureStatus, prescription_status
    from carevault.web.clinic.models import Prescription
    from carevault.web.labs.actions import result_status
    from carevault.web.labs.models import LabFile, LabResult
    from carevault.web.vault import service
    from carevault.web.vault.models import ClinicianKey

    report = CheckReport()
    for model in phi_models():
        count = 0
        for row in model._default_manager.all().iterator():
            for column in row.PHI_FIELDS:
                report.values += 1
                try:
                    row.unseal(column)
                except CryptoError:
                    report.failed_values += 1
                    report.failures.append(f"{model._meta.label_lower} {row.pk} {column}")
            count += 1
        report.by_model[model._meta.label_lower] = count
    for p in Prescription.objects.all():
        report.signed += 1
        values = p.unseal_all()
        if prescription_status(p, values) != SignatureStatus.VALID:
            report.failed_signatures += 1
            report.failures.append(f"{p._meta.label_lower} {p.pk} signature")
    for r in LabResult.objects.all():
        report.signed += 1
        if result_status(r, check_files=True)[1] != SignatureStatus.VALID:
            report.failed_signatures += 1
            report.failures.append(f"{r._meta.label_lower} {r.pk} signature")
    for key in ClinicianKey.objects.all():
        # Every clinician key, also one that has signed nothing yet: its private half must
        # unwrap, bound to its user and key id, and match its public half.
        report.signing_keys += 1
        try:
            service.verify_key(key)
        except CryptoError:
            report.failed_signing_keys += 1
            report.failures.append(f"{key._meta.label_lower} {key.pk} wrapped_private")
    report.files = LabFile.objects.count()
    return report


# -- the backup's database, opened beside the live one --------------------------------------------


@contextmanager
def backup_database(manifest: dict[str, Any], unpacked: Path) -> Iterator[str]:
    """A read-only Django connection alias to the backup's database (a temporary PostgreSQL
    database restored from the dump, dropped afterwards)."""
    kind = manifest["database"]["kind"]
    live = connections["default"].settings_dict
    dropped: str | None = None
    if kind == "sqlite":
        config = {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(unpacked / "database.sqlite3"),
            "OPTIONS": {},
        }
    else:
        if live["ENGINE"] != "django.db.backends.postgresql":
            raise BackupError("a PostgreSQL backup recovers into a PostgreSQL deployment")
        name = f"carevault_recover_{uuid.uuid4().hex[:12]}"
        base = _server_url(live)
        _psql(base + "/postgres", f'create database "{name}"')
        dropped = name
        restore_postgres(unpacked / "database.pgdump", base + f"/{name}")
        config = {**live, "NAME": name}
    connections.databases[ALIAS] = {**connections["default"].settings_dict, **config}
    try:
        yield ALIAS
    finally:
        connections[ALIAS].close()
        del connections[ALIAS]
        del connections.databases[ALIAS]
        if dropped is not None:
            _psql(_server_url(live) + "/postgres", f'drop database if exists "{dropped}"')


def _server_url(settings: dict[str, Any]) -> str:
    user = settings.get("USER") or "postgres"
    password = f":{settings['PASSWORD']}" if settings.get("PASSWORD") else ""
    host = settings.get("HOST") or "127.0.0.1"
    port = f":{settings['PORT']}" if settings.get("PORT") else ""
    return _libpq_url(f"postgresql://{user}{password}@{host}{port}")


# -- recovery after an incident -------------------------------------------------------------------


@dataclass
class Touched:
    label: str
    pk: str
    patient_id: str
    actions: list[str]
    outcome: str = ""  # restored | unchanged | not-in-backup | gone | failed

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def actor_filter(incident: Any) -> models.Q:
    from carevault.web.audit.models import AuditEntry  # noqa: F401  (the query's model)

    accounts, addresses = [], []
    for subject in incident.subjects.values_list("key", flat=True):
        kind, _, value = subject.partition(":")
        if kind == "account" and value:
            accounts.append(value)
        elif kind == "address" and value:
            addresses.append(value)
    if not accounts and not addresses:
        raise BackupError(
            f"incident {incident.pk} names no account or address: its actor is unknown"
        )
    return models.Q(actor__in=accounts) | models.Q(address__in=addresses)


def touched_records(
    incident: Any, since: dt.datetime, *, after_seq: int | None = None
) -> list[Touched]:
    """The PHI records the incident's actor touched after audit entry ``after_seq`` (from the
    audit log), or since ``since`` when the backup holds no audit entry to draw the line."""
    from carevault.web.audit.models import AuditEntry

    labels = {m._meta.label_lower for m in phi_models()}
    found: dict[tuple[str, str], Touched] = {}
    after = models.Q(seq__gt=after_seq) if after_seq is not None else models.Q(at__gte=since)
    entries = (
        AuditEntry.objects.filter(actor_filter(incident), after)
        .exclude(target_id="")
        .order_by("seq")
    )
    for entry in entries:
        if entry.target_type not in labels:
            continue
        key = (entry.target_type, entry.target_id)
        touched = found.setdefault(key, Touched(key[0], key[1], entry.patient_id, []))
        if entry.action not in touched.actions:
            touched.actions.append(entry.action)
    return list(found.values())


def _values(row: models.Model) -> dict[str, Any]:
    return {
        f.attname: (bytes(v) if isinstance(v := getattr(row, f.attname), memoryview) else v)
        for f in row._meta.concrete_fields
        if not f.primary_key
    }


def recover(
    incident_id: int,
    manifest: dict[str, Any],
    unpacked: Path,
    *,
    dry_run: bool,
) -> tuple[Any, list[Touched]]:
    from carevault.web.audit.log import record
    from carevault.web.securitycore.models import Incident

    incident = Incident.objects.filter(pk=incident_id).first()
    if incident is None:
        raise BackupError(f"there is no incident {incident_id}")
    from carevault.web.audit.models import AuditEntry

    since = dt.datetime.fromisoformat(manifest["created_at"])
    by_label = {m._meta.label_lower: m for m in phi_models()}
    with backup_database(manifest, unpacked) as alias:
        last = AuditEntry.objects.using(alias).aggregate(last=models.Max("seq"))["last"]
        touched = touched_records(incident, since, after_seq=last)
        for item in touched:
            model = by_label[item.label]
            try:
                pk = model._meta.pk.to_python(item.pk)
            except (ValidationError, ValueError):  # no key of this model: nothing to restore
                item.outcome = "gone"
                continue
            old = model._default_manager.using(alias).filter(pk=pk).first()
            current = model._default_manager.filter(pk=pk).first()
            if old is None:
                item.outcome = "not-in-backup"
            elif current is None:
                item.outcome = "gone"  # deleted since: recreating rows is not a field restore
            elif _values(old) == _values(current):
                item.outcome = "unchanged"
            elif dry_run:
                item.outcome = "would-restore"
            else:
                item.outcome = _restore_row(model, pk, _values(old), incident, manifest, record)
    if not dry_run:
        record(
            "backup.incident_recovered",
            target_type="securitycore.incident",
            target_id=str(incident.pk),
            details={
                "backup": manifest["backup_id"],
                "restored": sum(t.outcome == "restored" for t in touched),
                "touched": len(touched),
            },
        )
    return incident, touched


def _restore_row(
    model: type[PhiModel],
    pk: Any,
    values: dict[str, Any],
    incident: Any,
    manifest: dict[str, Any],
    record: Any,
) -> str:
    try:
        with transaction.atomic():
            model._default_manager.filter(pk=pk).update(**values)
            row = model._default_manager.get(pk=pk)
            for column in row.PHI_FIELDS:
                row.unseal(column)
            record(
                "backup.record_restored",
                target=row,
                patient_id=row.phi_patient_id(),
                details={"incident": incident.pk, "backup": manifest["backup_id"]},
            )
    except CryptoError:
        return "failed"  # the backup's values no longer open (e.g. the key was shredded)
    return "restored"
