"""Running a diagnosis for a patient (issue 7): validated input, the client's query guard, the
sealed model, what is released, the run sealed into the record, the audit entry (a PREDICTION
event for the security layer). Thin views call these; they take ``acting_user`` and a
:class:`~carevault.web.clientinfo.ClientInfo` (never a request), and audit."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db import transaction
from django.utils import timezone

from carevault.modelguard import dataset
from carevault.modelguard.diagnosis import DiagnosisUnavailable, InvalidFeatures, validate
from carevault.modelguard.guard import ClientKind, GuardVerdict
from carevault.modelguard.models import KINDS
from carevault.web.accounts.models import Role, User
from carevault.web.audit.log import Outcome, record
from carevault.web.clientinfo import NO_CLIENT, ClientInfo
from carevault.web.clinic.models import Patient
from carevault.web.errors import ActionError, NotAllowed, ValidationFailed
from carevault.web.labs.models import LabResult
from carevault.web.vault.context import write_context

from . import serving
from .models import ClientCutOff, DiagnosisRun


class TooManyQueries(ActionError):
    """The client used its query budget; ``retry_after`` seconds until it may ask again."""

    code = "rate_limited"
    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ExtractionCutOff(ActionError):
    """The extraction monitor cut the client off until a security officer clears it."""

    code = "cut_off"
    status = 403


class Unavailable(ActionError):
    code = "unavailable"
    status = 503


@dataclass(frozen=True)
class Released:
    """What the client is shown (and what the record keeps) of one diagnosis."""

    label: str  # "malignant" | "benign"
    confidence: float | None  # the released P(malignant), None when the policy releases none
    policy: str
    model: str
    kind: str
    version: int
    top_features: list[dict[str, Any]]  # [{"feature", "contribution" | None}]
    explanation_method: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "confidence": self.confidence,
            "policy": self.policy,
            "model": self.model,
            "kind": self.kind,
            "version": self.version,
            "top_features": self.top_features,
            "explanation_method": self.explanation_method,
        }


_LINE = re.compile(r"^\s*([A-Za-z][A-Za-z ]*[A-Za-z])\s*[:=]\s*([-+0-9.eE]+)\s*$")


def features_from_lab_values(text: str) -> dict[str, float]:
    """The diagnosis features a lab result reports, one ``name: value`` per line (names as in
    the data set, e.g. ``mean radius: 17.99``); other lines are ignored. Missing or bad
    features are reported by the validation, by name."""
    names = set(dataset.feature_names())
    found: dict[str, float] = {}
    for line in text.splitlines():
        match = _LINE.match(line)
        if match and match.group(1).strip().lower() in names:
            try:
                found[match.group(1).strip().lower()] = float(match.group(2))
            except ValueError:
                continue
    return found


def lab_features(acting_user: User, patient: Patient, result_id: Any) -> dict[str, float]:
    """The features in one of the patient's lab results (a doctor with access to the patient)."""
    result = LabResult.objects.filter(pk=result_id, patient=patient).first()
    if result is None:
        raise ValidationFailed("no such lab result for this patient", field="lab_result")
    values = result.unseal_or_none("values")
    if values is None:
        raise ValidationFailed(
            "that lab result does not authenticate (tampered); enter the features by hand",
            field="lab_result",
        )
    found = features_from_lab_values(values)
    if not found:
        raise ValidationFailed(
            "that lab result reports none of the diagnosis features", field="lab_result"
        )
    return found


def _client_id(acting_user: User, client_kind: ClientKind) -> str:
    return f"{client_kind.value}:{acting_user.pk}"


def _top_features(explanation: dict[str, Any], client_kind: ClientKind) -> list[dict[str, Any]]:
    top = explanation.get("top", [])
    if client_kind is ClientKind.API:
        # Machines get which features drove the result, not by how much: magnitudes are the
        # model's weights times the input, which is what an extraction attacker solves for.
        return [{"feature": t["feature"], "contribution": None} for t in top]
    return [
        {"feature": t["feature"], "contribution": round(float(t["contribution"]), 1)} for t in top
    ]


def do_run_diagnosis(
    acting_user: User,
    patient: Patient,
    features: Sequence[object] | Mapping[str, object],
    *,
    model: str = "logistic",
    client_kind: ClientKind = ClientKind.DOCTOR_UI,
    client: ClientInfo = NO_CLIENT,
) -> tuple[DiagnosisRun, Released]:
    """Diagnose, release what the client's policy allows, keep it sealed in the record.

    The caller has checked the user may see ``patient`` (``patient_for_user``)."""
    if acting_user.role != Role.DOCTOR:
        raise NotAllowed("only doctors run diagnoses")
    if model not in KINDS:
        raise ValidationFailed(
            f"unknown model {model!r}; choose one of {', '.join(KINDS)}", field="model"
        )
    service = serving.service()
    try:
        ranges = service.model(model).ranges
        x = validate(features, ranges)
    except InvalidFeatures as exc:
        raise ValidationFailed(str(exc), field=exc.feature or "features") from None
    except DiagnosisUnavailable as exc:
        raise Unavailable(str(exc)) from None
    guard = serving.guard()
    # The extraction guard's client: the account and the kind of client (not the connection).
    guarded = _client_id(acting_user, client_kind)
    if ClientCutOff.objects.filter(client=guarded, lifted_at__isnull=True).exists():
        verdict = GuardVerdict(False, "cut off by the extraction monitor", True, False, None)
    else:
        if guard.monitor.is_cut_off(guarded):
            # Lifted by an officer (possibly through another app server): start afresh here too.
            guard.clear(guarded)
        verdict = guard.check(
            guarded, np.asarray(x, dtype=np.float64)[0], timezone.now(), client_kind
        )
        if verdict.newly_cut_off:
            ClientCutOff.objects.create(client=guarded, user=acting_user, reason=verdict.reason)
    if not verdict.allowed:
        record(
            "prediction.refused",
            actor=acting_user,
            outcome=Outcome.ALERT if verdict.newly_cut_off else Outcome.DENIED,
            target=patient,
            patient_id=patient.pk,
            client=client,
            details={"model": model, "client": client_kind.value, "reason": verdict.reason},
        )
        if verdict.cut_off:
            raise ExtractionCutOff(
                "diagnosis queries from this account are suspended by the extraction monitor "
                "until a security officer lifts it"
            )
        seconds = int(verdict.retry_after.total_seconds()) if verdict.retry_after else 60
        raise TooManyQueries(f"{verdict.reason}: try again in {seconds} s", max(1, seconds))
    try:
        diagnosis = service.diagnose(x[0].tolist(), model=model)
    except DiagnosisUnavailable as exc:
        raise Unavailable(str(exc)) from None
    label = 1 if diagnosis.malignant else 0
    out = guard.release(diagnosis.probability, label, client_kind)
    explanation = diagnosis.explanation.as_dict()
    released = Released(
        label=diagnosis.label,
        confidence=out.confidence,
        policy=out.policy.value,
        model=diagnosis.model,
        kind=diagnosis.kind,
        version=diagnosis.version,
        top_features=_top_features(explanation, client_kind),
        explanation_method=str(explanation.get("method", "")),
    )
    inputs = dict(zip(dataset.feature_names(), (float(v) for v in x[0]), strict=True))
    with transaction.atomic():
        run = DiagnosisRun(patient=patient, doctor=acting_user)
        run.seal(
            write_context(acting_user, client),
            inputs=json.dumps(inputs, sort_keys=True),
            result=json.dumps({**released.as_dict(), "client": client_kind.value}, sort_keys=True),
        )
        run.save()
        record(
            "prediction.run",
            actor=acting_user,
            target=run,
            patient_id=patient.pk,
            client=client,
            details={
                "model": diagnosis.model,
                "version": diagnosis.version,
                "client": client_kind.value,
                "policy": out.policy.value,
            },
        )
    return run, released


def run_history(patient: Patient) -> list[dict[str, Any]]:
    """The patient's diagnosis runs as stored (None where a run does not authenticate)."""
    history = []
    for run in DiagnosisRun.objects.filter(patient=patient).select_related("doctor"):
        result = run.unseal_or_none("result")
        history.append(
            {
                "id": run.pk,
                "doctor": run.doctor.username,
                "created_at": run.created_at,
                "result": json.loads(result) if result is not None else None,
            }
        )
    return history


def active_cut_offs() -> list[ClientCutOff]:
    return list(ClientCutOff.objects.filter(lifted_at__isnull=True).select_related("user")[:200])


@transaction.atomic
def do_lift_cut_off(
    acting_user: User, cut_off: ClientCutOff, *, client: ClientInfo = NO_CLIENT
) -> bool:
    """A security officer lets the client query again (its monitor history starts afresh).
    Audited; False if it was lifted already."""
    if acting_user.role != Role.ADMIN:
        raise NotAllowed("only security officers lift cut-offs")
    locked = ClientCutOff.objects.select_for_update().get(pk=cut_off.pk)
    if locked.lifted_at is not None:
        return False
    locked.lifted_at, locked.lifted_by = timezone.now(), acting_user
    locked.save(update_fields=["lifted_at", "lifted_by"])
    serving.guard().clear(locked.client)
    record(
        "modelguard.cut_off_lifted",
        actor=acting_user,
        target=locked,
        client=client,
        details={"client": locked.client, "account": locked.user.username},
    )
    return True
