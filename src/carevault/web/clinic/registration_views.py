"""Patients register themselves (the sign-up page); every other role is made by an officer."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from carevault.web.clientinfo import ClientInfo
from carevault.web.errors import ActionError
from carevault.web.login.sealed_forms import Purpose, bind_form

from . import registration
from .forms import RegistrationForm


def register(request: HttpRequest) -> HttpResponse:
    """Patients register themselves; every other role is assigned by an administrator.

    The password arrives sealed (sealed_forms.py); a taken username is never reported, the new
    account gets a free variant of it instead (registration.py), shown after success.
    """
    form = bind_form(request, RegistrationForm, Purpose.REGISTER)
    if request.method == "POST" and form.is_valid():
        try:
            done = registration.register(
                client=ClientInfo.from_request(request), **form.cleaned_data
            )
        except registration.RegistrationLimited as exc:
            form.add_error(None, exc.message)
            if not exc.retry_after:  # turned off
                return render(request, "accounts/register.html", {"form": form}, status=403)
            response = render(request, "accounts/register.html", {"form": form}, status=429)
            response["Retry-After"] = str(exc.retry_after)
            return response
        except ActionError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            messages.success(
                request,
                f"Your account is ready. Your username is {done.username}: "
                "log in with it and your password.",
            )
            return redirect("accounts:login")
    return render(request, "accounts/register.html", {"form": form})
