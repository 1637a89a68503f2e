from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from carevault.web.clinic import actions
from carevault.web.errors import ActionError

from .forms import RegistrationForm


def register(request: HttpRequest) -> HttpResponse:
    """Patients register themselves; every other role is assigned by an administrator."""
    form = RegistrationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            actions.do_register_patient(request=request, **form.cleaned_data)
        except ActionError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            return redirect("accounts:login")
    return render(request, "accounts/register.html", {"form": form})
