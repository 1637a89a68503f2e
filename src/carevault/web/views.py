from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect

from carevault.web.accounts.models import Role

HOME_BY_ROLE = {
    Role.DOCTOR: "clinic:doctor_home",
    Role.PATIENT: "clinic:patient_home",
    Role.LABTECH: "labs:queue",
    Role.ADMIN: "officer:dashboard",
}


@login_required
def home(request: HttpRequest) -> HttpResponse:
    role = getattr(request.user, "role", "")
    return redirect(HOME_BY_ROLE[Role(role)])


def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness for load balancers: the database answers. Says nothing else."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"ok": True})
