"""The doctor's diagnosis assistant on the patient's record (issue 7). Thin: access through
``patient_for_user``, the work in :mod:`.actions`."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from carevault.modelguard import dataset
from carevault.web.access import role_required
from carevault.web.accounts.models import Role, User
from carevault.web.clientinfo import ClientInfo
from carevault.web.clinic.access import patient_for_user
from carevault.web.errors import ActionError
from carevault.web.labs.models import LabResult

from . import actions
from .forms import DiagnosisForm


def _lab_choices(patient: Any) -> list[tuple[str, str]]:
    results = LabResult.objects.filter(patient=patient).select_related("request")
    return [(str(r.pk), f"{r.request.sample_code} ({r.created_at:%Y-%m-%d})") for r in results[:50]]


@require_http_methods(["GET", "POST"])
@role_required(Role.DOCTOR)
def run(request: HttpRequest, patient_id: uuid.UUID) -> HttpResponse:
    access = patient_for_user(request, patient_id, purpose="diagnosis")
    patient, user = access.patient, request.user
    assert isinstance(user, User)
    status = 200
    form = DiagnosisForm(request.POST or None, lab_results=_lab_choices(patient))
    if request.method == "POST":
        if form.is_valid():
            try:
                features: dict[str, float] = {}
                if form.cleaned_data["lab_result"]:
                    features.update(
                        actions.lab_features(user, patient, form.cleaned_data["lab_result"])
                    )
                features.update(form.entered())
                actions.do_run_diagnosis(
                    user,
                    patient,
                    features,
                    model=form.cleaned_data["model"],
                    client=ClientInfo.from_request(request),
                )
            except ActionError as exc:
                form.add_error(None, exc.message)
                status = getattr(exc, "status", 400)
            else:
                messages.success(request, "Diagnosis run and kept in the record.")
                return redirect("diagnosis:run", patient_id=patient.pk)
        else:
            status = 400
    context = {
        "patient": patient,
        "via": access.via,
        "form": form,
        "history": actions.run_history(patient),
        "feature_count": len(dataset.feature_names()),
    }
    return render(request, "diagnosis/run.html", context, status=status)
