"""The security officer's pages: the audit log, break-glass review, key status, login protection
(suspended accounts, blocked addresses), the security layer (risk timeline, incidents, responses
in force, encryption floor, detector health, key versions; issue 5), user admin.

Officers do not read clinical content: nothing here decrypts a diagnosis, note, prescription,
lab result or a patient's identity. Patients appear by their record id only.
"""

from __future__ import annotations

import ipaddress
import json
import uuid
from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from carevault.web.access import deny, role_required
from carevault.web.accounts import actions as account_actions
from carevault.web.accounts.models import Role, User
from carevault.web.audit.log import verify_chain
from carevault.web.clientinfo import ClientInfo
from carevault.web.clinic import actions as clinic_actions
from carevault.web.clinic.models import BreakGlassGrant
from carevault.web.diagnosis import actions as diagnosis_actions
from carevault.web.diagnosis.models import ClientCutOff
from carevault.web.errors import ActionError
from carevault.web.login import actions as login_actions
from carevault.web.login.sealed_forms import Purpose, bind_form
from carevault.web.securitycore import actions as security_actions
from carevault.web.securitycore.models import Incident, ResponseRecord

from . import dashboard as security_dashboard
from . import encryption
from .actions import active_grants_for_review, background_jobs, do_queue_job, do_retry_job
from .forms import AuditFilterForm, RoleForm, StaffUserForm

AUDIT_PAGE_SIZE = 50
USERS_PAGE_SIZE = 25


class OfficerRequest(HttpRequest):
    """A request that passed ``role_required(Role.ADMIN)``: the user is a logged-in officer."""

    user: User


# -- dashboard -------------------------------------------------------------------------------------


def _audit_page(request: HttpRequest) -> dict[str, Any]:
    form = AuditFilterForm(request.GET or None)
    filters = form.cleaned_data if form.is_bound and form.is_valid() else {}
    entries = security_dashboard.audit_entries(**filters)
    page = Paginator(entries, AUDIT_PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [(entry, json.dumps(entry.details, sort_keys=True)) for entry in page.object_list]
    return {"filter_form": form, "page": page, "rows": rows}


def _grants_context(officer: User, client: ClientInfo) -> dict[str, Any]:
    return {"grants": active_grants_for_review(officer, client=client)}


def _incidents_context(notice: str = "") -> dict[str, Any]:
    return {"incidents": security_dashboard.active_incidents(), "notice": notice}


def _security_state_context(notice: str = "") -> dict[str, Any]:
    return {
        "in_force": security_dashboard.responses_in_force(),
        "recent_responses": security_dashboard.recent_responses(),
        "health": security_dashboard.detector_health(),
        "key_versions": security_dashboard.key_versions(),
        **security_dashboard.floor_context(),
        "notice": notice,
    }


@require_GET
@role_required(Role.ADMIN)
def dashboard(request: OfficerRequest) -> HttpResponse:
    now = timezone.now()
    context = {
        **_audit_page(request),
        **_grants_context(request.user, ClientInfo.from_request(request)),
        **security_dashboard.suspensions(),
        **security_dashboard.blocks(),
        **_cut_offs_context(),
        **_incidents_context(),
        **_security_state_context(),
        "chain": verify_chain(),
        "counts": security_dashboard.recent_counts(now),
        "keys": security_dashboard.key_status(),
        "recent_hours": int(security_dashboard.RECENT.total_seconds() // 3600),
    }
    return render(request, "officer/dashboard.html", context)


@require_GET
@role_required(Role.ADMIN)
def audit_table(request: OfficerRequest) -> HttpResponse:
    """The audit table alone: the dashboard polls it (htmx, every 10 s)."""
    return render(request, "officer/_audit_table.html", _audit_page(request))


@require_POST
@role_required(Role.ADMIN)
def revoke_break_glass(request: OfficerRequest, grant_id: uuid.UUID) -> HttpResponse:
    grant = BreakGlassGrant.objects.filter(pk=grant_id).select_related("doctor").first()
    if grant is None:
        deny(
            request,
            reason="no such break-glass grant",
            target_type="clinic.breakglassgrant",
            target_id=grant_id,
        )
    client = ClientInfo.from_request(request)
    notice = ""
    if not grant.active:
        notice = "That emergency access had already ended."
    else:
        try:
            clinic_actions.do_revoke_break_glass(request.user, grant, client=client)
        except ActionError as exc:
            notice = exc.message
        else:
            notice = f"Emergency access of {grant.doctor.username} revoked."
    if request.headers.get("HX-Request"):
        return render(
            request,
            "officer/_grants.html",
            {**_grants_context(request.user, client), "notice": notice},
        )
    messages.info(request, notice)
    return redirect("officer:dashboard")


def _answer(request: OfficerRequest, template: str, context: dict[str, Any]) -> HttpResponse:
    """htmx swaps the section in place; without JavaScript, back to the dashboard."""
    if request.headers.get("HX-Request"):
        return render(request, template, context)
    messages.info(request, context["notice"])
    return redirect("officer:dashboard")


@require_POST
@role_required(Role.ADMIN)
def lift_suspension(request: OfficerRequest, user_id: int) -> HttpResponse:
    person = User.objects.filter(pk=user_id).first()
    if person is None:
        deny(request, reason="no such user", target_type="accounts.user", target_id=user_id)
    try:
        lifted = login_actions.do_lift_suspension(
            request.user, person, client=ClientInfo.from_request(request)
        )
    except ActionError as exc:
        notice = exc.message
    else:
        notice = (
            f"Suspension of {person.username} lifted."
            if lifted
            else f"{person.username} was not suspended."
        )
    return _answer(
        request, "officer/_suspensions.html", {**security_dashboard.suspensions(), "notice": notice}
    )


@require_POST
@role_required(Role.ADMIN)
def unblock_address(request: OfficerRequest) -> HttpResponse:
    address = request.POST.get("address", "").strip()[:64]
    try:
        # Blocks are kept under the address as net.client_address wrote it ("invalid" stands for
        # every unparseable peer address).
        address = address if address == "invalid" else str(ipaddress.ip_address(address))
    except ValueError:
        notice = "That is not a client address."
    else:
        try:
            unblocked = login_actions.do_unblock_address(
                request.user, address, client=ClientInfo.from_request(request)
            )
        except ActionError as exc:
            notice = exc.message
        else:
            notice = f"{address} unblocked." if unblocked else f"{address} was not blocked."
    return _answer(
        request, "officer/_blocks.html", {**security_dashboard.blocks(), "notice": notice}
    )


def _cut_offs_context() -> dict[str, Any]:
    return {"cut_offs": diagnosis_actions.active_cut_offs()}


@require_POST
@role_required(Role.ADMIN)
def lift_cut_off(request: OfficerRequest, cut_off_id: int) -> HttpResponse:
    cut_off = ClientCutOff.objects.filter(pk=cut_off_id).first()
    if cut_off is None:
        deny(request, reason="no such cut-off", target_type="diagnosis.clientcutoff")
    try:
        lifted = diagnosis_actions.do_lift_cut_off(
            request.user, cut_off, client=ClientInfo.from_request(request)
        )
    except ActionError as exc:
        notice = exc.message
    else:
        name = cut_off.user.username
        notice = f"{name} may query the diagnosis models again." if lifted else "Already lifted."
    return _answer(request, "officer/_cut_offs.html", {**_cut_offs_context(), "notice": notice})


# -- the security layer: incidents, responses, the floor (issue 5) ---------------------------------


@require_GET
@role_required(Role.ADMIN)
def incidents(request: OfficerRequest) -> HttpResponse:
    """The active incidents alone: the dashboard polls them (htmx, every 10 s)."""
    return render(request, "officer/_incidents.html", _incidents_context())


@require_GET
@role_required(Role.ADMIN)
def security_state(request: OfficerRequest) -> HttpResponse:
    """Responses in force, the floor, detector health, key versions (polled every 10 s)."""
    return render(request, "officer/_security_state.html", _security_state_context())


@require_GET
@role_required(Role.ADMIN)
def risk_timeline(request: OfficerRequest) -> HttpResponse:
    """The risk per minute as JSON, for the chart (static/js/risk-timeline.js polls it)."""
    try:
        minutes = int(request.GET.get("minutes", security_dashboard.TIMELINE_MINUTES))
    except ValueError:
        minutes = security_dashboard.TIMELINE_MINUTES
    response = JsonResponse(security_dashboard.timeline(minutes))
    response["Cache-Control"] = "no-store"
    return response


def _incident_or_deny(request: OfficerRequest, incident_id: int) -> Incident:
    incident = Incident.objects.filter(pk=incident_id).first()
    if incident is None:
        deny(
            request,
            reason="no such incident",
            target_type="securitycore.incident",
            target_id=incident_id,
        )
    return incident


def _incident_decision(
    request: OfficerRequest, incident_id: int, decide: Any, done: str
) -> HttpResponse:
    incident = _incident_or_deny(request, incident_id)
    try:
        decide(request.user, incident, client=ClientInfo.from_request(request))
    except ActionError as exc:
        notice = exc.message
    else:
        notice = done.format(pk=incident.pk)
    return _answer(request, "officer/_incidents.html", _incidents_context(notice))


@require_POST
@role_required(Role.ADMIN)
def acknowledge_incident(request: OfficerRequest, incident_id: int) -> HttpResponse:
    return _incident_decision(
        request,
        incident_id,
        security_actions.do_acknowledge_incident,
        "Incident #{pk} acknowledged.",
    )


@require_POST
@role_required(Role.ADMIN)
def escalate_incident(request: OfficerRequest, incident_id: int) -> HttpResponse:
    return _incident_decision(
        request, incident_id, security_actions.do_escalate_incident, "Incident #{pk} escalated."
    )


@require_POST
@role_required(Role.ADMIN)
def close_incident(request: OfficerRequest, incident_id: int) -> HttpResponse:
    return _incident_decision(
        request, incident_id, security_actions.do_close_incident, "Incident #{pk} closed."
    )


@require_POST
@role_required(Role.ADMIN)
def lift_response(request: OfficerRequest, response_id: int) -> HttpResponse:
    response = ResponseRecord.objects.filter(pk=response_id).first()
    if response is None:
        deny(
            request,
            reason="no such security response",
            target_type="securitycore.responserecord",
            target_id=response_id,
        )
    reason = request.POST.get("reason", "").strip()[:200]
    try:
        security_actions.do_lift_response(
            request.user, response, reason=reason, client=ClientInfo.from_request(request)
        )
    except ActionError as exc:
        notice = exc.message
    else:
        notice = f"Response #{response.pk} ({response.action} {response.target}) lifted."
    return _answer(request, "officer/_security_state.html", _security_state_context(notice))


@require_POST
@role_required(Role.ADMIN)
def lower_floor(request: OfficerRequest) -> HttpResponse:
    try:
        lowered = security_actions.do_lower_floor(
            request.user, client=ClientInfo.from_request(request)
        )
    except ActionError as exc:
        notice = exc.message
    else:
        notice = "Encryption floor lowered." if lowered else "No raised floor was in force."
    return _answer(request, "officer/_security_state.html", _security_state_context(notice))


# -- user administration ---------------------------------------------------------------------------


@require_GET
@role_required(Role.ADMIN)
def users(request: OfficerRequest) -> HttpResponse:
    people = User.objects.order_by("username")
    role = request.GET.get("role", "")
    if role in Role.values:
        people = people.filter(role=role)
    page = Paginator(people, USERS_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "officer/users.html",
        {"page": page, "roles": Role.choices, "selected_role": role},
    )


@require_http_methods(["GET", "POST"])
@role_required(Role.ADMIN)
def user_create(request: OfficerRequest) -> HttpResponse:
    form = bind_form(request, StaffUserForm, Purpose.STAFF_USER)
    if request.method == "POST" and form.is_valid():
        try:
            user = account_actions.do_create_staff_user(
                request.user, client=ClientInfo.from_request(request), **form.cleaned_data
            )
        except ActionError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            messages.success(request, f"Account {user.username} created.")
            return redirect("officer:user_edit", user_id=user.pk)
    return render(request, "officer/user_create.html", {"form": form})


@require_http_methods(["GET", "POST"])
@role_required(Role.ADMIN)
def user_edit(request: OfficerRequest, user_id: int) -> HttpResponse:
    person = User.objects.filter(pk=user_id).first()
    if person is None:
        deny(request, reason="no such user", target_type="accounts.user", target_id=user_id)
    error = ""
    if request.method == "POST":
        client = ClientInfo.from_request(request)
        op = request.POST.get("op", "")
        try:
            if op == "role":
                # The action, not a form, refuses patient <-> staff changes: its message says why.
                role = request.POST.get("role", "")
                account_actions.do_change_role(request.user, person, role, client=client)
                messages.success(request, f"{person.username} is now {person.get_role_display()}.")
            elif op in ("activate", "deactivate"):
                account_actions.do_set_active(request.user, person, op == "activate", client=client)
                state = "reactivated" if op == "activate" else "deactivated"
                messages.success(request, f"{person.username} {state}.")
            else:
                error = "Unknown operation."
        except ActionError as exc:
            error = exc.message
        if not error:
            return redirect("officer:user_edit", user_id=person.pk)
    return render(
        request,
        "officer/user_edit.html",
        {
            "person": person,
            "role_form": RoleForm(initial={"role": person.role}),
            "error": error,
            "is_self": person.pk == request.user.pk,
        },
    )


# -- encryption (issue 6) --------------------------------------------------------------------------


def _encryption_context(request: OfficerRequest, notice: str = "") -> dict[str, Any]:
    query = {k: request.GET.get(k, "")[:80] for k in ("table", "suite", "record")}
    return {
        **encryption.decisions(**query, page=request.GET.get("page", 1)),
        **encryption.jobs(),
        **security_dashboard.floor_context(),
        "query": query,
        "tables": encryption.tables(),
        "distribution": encryption.distribution(),
        "policy": encryption.policy(),
        "notice": notice,
    }


@require_GET
@role_required(Role.ADMIN)
def encryption_page(request: OfficerRequest) -> HttpResponse:
    """How each record is encrypted and why; the policy, the floor, re-encryption jobs."""
    return render(request, "officer/encryption.html", _encryption_context(request))


@require_GET
@role_required(Role.ADMIN)
def reencryption_jobs(request: OfficerRequest) -> HttpResponse:
    """The jobs table alone: the page polls it while a job is open (htmx, every 5 s)."""
    return render(request, "officer/_reencryption_jobs.html", encryption.jobs())


@require_POST
@role_required(Role.ADMIN)
def start_reencryption(request: OfficerRequest) -> HttpResponse:
    """Start (or resume) re-encrypting stored data up to the raised floor. Audited."""
    try:
        job = security_actions.do_start_reencryption(
            request.user, client=ClientInfo.from_request(request)
        )
    except ActionError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Re-encryption job {job.pk} to {job.target_suite} started.")
    return redirect("officer:encryption")


# -- background jobs (issue 16) --------------------------------------------------------------------


@require_GET
@role_required(Role.ADMIN)
def jobs_page(request: OfficerRequest) -> HttpResponse:
    """Running and recent background jobs with their progress; failed ones can be retried."""
    return render(request, "officer/jobs.html", background_jobs())


@require_GET
@role_required(Role.ADMIN)
def jobs_table(request: OfficerRequest) -> HttpResponse:
    """The jobs table alone: the page polls it while a job is open (htmx, every 3 s)."""
    return render(request, "officer/_jobs.html", background_jobs())


@require_POST
@role_required(Role.ADMIN)
def retry_job(request: OfficerRequest, run_id: int) -> HttpResponse:
    """Queue a failed job again. Audited."""
    try:
        again = do_retry_job(request.user, run_id, client=ClientInfo.from_request(request))
    except ActionError as exc:
        notice = exc.message
    else:
        notice = f"Job {run_id} queued again as job {again.pk}." if again else "Queued again."
    if request.headers.get("HX-Request"):
        return render(request, "officer/_jobs.html", {**background_jobs(), "notice": notice})
    messages.info(request, notice)
    return redirect("officer:jobs")


@require_POST
@role_required(Role.ADMIN)
def queue_job(request: OfficerRequest) -> HttpResponse:
    """Start one of the jobs an officer may start (retraining, sealing, ...). Audited."""
    kind = request.POST.get("kind", "")[:64]
    try:
        run = do_queue_job(request.user, kind, client=ClientInfo.from_request(request))
    except ActionError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Job {run.pk if run else ''} ({kind}) queued.")
    return redirect("officer:jobs")
