"""Account security pages: the second factor, the login's second step, step-up, "log out
everywhere", and password reset.

===========================================  =========  ===========================================
URL name                                     methods    who
===========================================  =========  ===========================================
account_security:overview                    GET        anyone logged in: 2FA status, log out
                                                        everywhere
account_security:logout_everywhere           POST       anyone logged in (ends every session)
account_security:totp_setup                  GET, POST  anyone logged in: enrol (code + password)
account_security:totp_disable                POST       anyone logged in with TOTP (needs a code)
account_security:recovery_codes              POST       anyone logged in with TOTP (needs a code)
account_security:verify                      GET, POST  the login's second step (a pending login
                                                        in this session; else the login page)
account_security:step_up                     GET, POST  a logged-in session asked for step-up
account_security:password_reset              GET, POST  anyone
account_security:password_reset_done         GET        anyone
account_security:password_reset_confirm      GET, POST  anyone holding a valid link
===========================================  =========  ===========================================
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from carevault.crypto.otp import base32_secret
from carevault.web.accounts.models import User
from carevault.web.clientinfo import ClientInfo
from carevault.web.errors import ActionError
from carevault.web.forms import BootstrapForm

from . import actions, factor_state, recovery, sessions, twofactor
from .sealed_forms import Purpose, SealedPasswordInput, bind_form

# -- forms -----------------------------------------------------------------------------------------


class CodeForm(BootstrapForm):
    code = forms.CharField(
        label="Code",
        max_length=32,
        strip=True,
        help_text="The 6-digit code from your authenticator app, or one of your recovery codes.",
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "text", "autofocus": True}
        ),
    )


class EnrolForm(BootstrapForm):
    code = forms.CharField(
        label="Code from your app",
        max_length=16,
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}
        ),
    )
    password = forms.CharField(
        label="Your password",
        strip=False,
        max_length=200,
        widget=SealedPasswordInput(attrs={"autocomplete": "current-password"}),
        help_text="Needed to turn on two-factor authentication.",
    )


class ResetRequestForm(BootstrapForm):
    identifier = forms.CharField(
        label="Username or e-mail address",
        max_length=254,
        widget=forms.TextInput(attrs={"autocomplete": "username", "autofocus": True}),
    )


class NewPasswordForm(BootstrapForm):
    password1 = forms.CharField(
        label="New password",
        strip=False,
        max_length=200,
        widget=SealedPasswordInput(attrs={"autocomplete": "new-password"}),
    )
    password2 = forms.CharField(
        label="New password again",
        strip=False,
        max_length=200,
        widget=SealedPasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("password1") and data.get("password1") != data.get("password2"):
            self.add_error("password2", "The two passwords are not the same.")
        return data


# -- helpers ---------------------------------------------------------------------------------------


class SignedInRequest(HttpRequest):
    user: User


def _next(request: HttpRequest) -> str:
    """``next`` from the query or the form, if it is a page of this site."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return ""


def _with_next(name: str, next_url: str) -> str:
    url = reverse(name)
    return f"{url}?{urlencode({'next': next_url})}" if next_url else url


def _add_error(form: forms.Form, exc: ActionError, default_field: str) -> None:
    field = exc.field if exc.field in form.fields else default_field
    form.add_error(field, exc.message)


def _site_url(request: HttpRequest) -> str:
    """Where reset links point: the configured site address when there is one (a link must
    never be built from a Host header an attacker chose; ALLOWED_HOSTS guards that too), else
    this request's scheme and host."""
    return str(settings.SITE_URL) or request.build_absolute_uri("/").rstrip("/")


def _session_ended(request: HttpRequest) -> HttpResponse:
    messages.warning(request, sessions.MESSAGES[sessions.TOO_MANY_CODES])
    return redirect("accounts:login")


# -- overview and log out everywhere ---------------------------------------------------------------


@login_required
@require_safe
def overview(request: SignedInRequest) -> HttpResponse:
    user = request.user
    return render(
        request,
        "account_security/overview.html",
        {
            "has_totp": user.has_totp,
            "remaining_codes": recovery.remaining_recovery_codes(user) if user.has_totp else 0,
        },
    )


@login_required
@require_POST
def logout_everywhere(request: SignedInRequest) -> HttpResponse:
    actions.do_revoke_all_sessions(
        request.user,
        request.user,
        reason="log out everywhere",
        client=ClientInfo.from_request(request),
    )
    logout(request)
    messages.info(request, "You were logged out everywhere, on every device.")
    return redirect("accounts:login")


# -- enrolment, disabling, recovery codes ----------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def totp_setup(request: SignedInRequest) -> HttpResponse:
    user = request.user
    if user.has_totp:
        messages.info(request, "Two-factor authentication is already on.")
        return redirect("account_security:overview")
    next_url = _next(request)
    client = ClientInfo.from_request(request)
    enrolment = twofactor.start_enrolment(user, shown=factor_state.shown_enrolment(request))
    factor_state.remember_enrolment(request, enrolment.mark)
    secret = enrolment.secret
    form = bind_form(request, EnrolForm, Purpose.TOTP_ENROL)
    if request.method == "POST" and form.is_valid():
        try:
            codes = actions.do_enable_totp(
                user,
                code=form.cleaned_data["code"],
                password=form.cleaned_data["password"],
                shown=enrolment.mark,
                client=client,
            )
        except ActionError as exc:
            _add_error(form, exc, "code")
        else:
            factor_state.enrolled(request)
            return render(
                request,
                "account_security/recovery_codes.html",
                {"codes": codes, "enrolled": True, "next": next_url},
            )
    plain = base32_secret(secret)
    return render(
        request,
        "account_security/totp_setup.html",
        {
            "form": form,
            "secret_groups": [plain[i : i + 4] for i in range(0, len(plain), 4)],
            "qr_svg": twofactor.qr_svg(twofactor.enrolment_uri(user, secret)),
            "step_up": factor_state.step_up_demanded(request),
            "next": next_url,
        },
        status=400 if form.errors else 200,
    )


@login_required
@require_POST
def totp_disable(request: SignedInRequest) -> HttpResponse:
    form = CodeForm(request.POST)
    if not request.user.has_totp:
        messages.info(request, "Two-factor authentication is not on.")
    elif not form.is_valid():
        messages.error(request, "Enter a code to turn two-factor authentication off.")
    else:
        user = request.user
        try:
            actions.do_disable_totp(
                user, code=form.cleaned_data["code"], client=ClientInfo.from_request(request)
            )
        except ActionError as exc:
            if isinstance(exc, twofactor.SecondFactorFailed):
                factor_state.wrong_code_in_session(request, user, "disable")
            if not request.user.is_authenticated:
                return _session_ended(request)
            messages.error(request, exc.message)
        else:
            factor_state.right_code_in_session(request)
            messages.success(request, "Two-factor authentication is off.")
    return redirect("account_security:overview")


@login_required
@require_POST
def recovery_codes(request: SignedInRequest) -> HttpResponse:
    form = CodeForm(request.POST)
    if not request.user.has_totp:
        messages.info(request, "Turn on two-factor authentication first.")
    elif not form.is_valid():
        messages.error(request, "Enter a code to get new recovery codes.")
    else:
        user = request.user
        try:
            codes = actions.do_regenerate_recovery_codes(
                user, code=form.cleaned_data["code"], client=ClientInfo.from_request(request)
            )
        except ActionError as exc:
            if isinstance(exc, twofactor.SecondFactorFailed):
                factor_state.wrong_code_in_session(request, user, "recovery-codes")
            if not request.user.is_authenticated:
                return _session_ended(request)
            messages.error(request, exc.message)
        else:
            factor_state.right_code_in_session(request)
            return render(
                request, "account_security/recovery_codes.html", {"codes": codes, "next": ""}
            )
    return redirect("account_security:overview")


# -- the login's second step and step-up -----------------------------------------------------------


@require_http_methods(["GET", "POST"])
def verify(request: HttpRequest) -> HttpResponse:
    next_url = _next(request)
    if request.user.is_authenticated:
        return redirect(next_url or "home")
    user = factor_state.pending_user(request)
    if user is None:
        if request.method == "POST":
            messages.warning(request, "Your login expired. Please log in again.")
        return redirect(_with_next("accounts:login", next_url))
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            factor_state.verify_pending(request, user, form.cleaned_data["code"])
        except twofactor.SecondFactorFailed as exc:
            if factor_state.pending_user(request) is None:
                messages.warning(request, "Too many wrong codes. Please log in again.")
                return redirect(_with_next("accounts:login", next_url))
            form.add_error("code", exc.message)
        else:
            factor_state.finish(request, user)
            return redirect(next_url or "home")
    return render(
        request,
        "account_security/verify.html",
        {"form": form, "next": next_url},
        status=400 if form.errors else 200,
    )


@login_required
@require_http_methods(["GET", "POST"])
def step_up(request: SignedInRequest) -> HttpResponse:
    next_url = _next(request)
    if not factor_state.step_up_demanded(request):
        return redirect(next_url or "home")
    if not request.user.has_totp:
        return redirect(_with_next("account_security:totp_setup", next_url))
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            factor_state.complete_step_up(request, request.user, form.cleaned_data["code"])
        except twofactor.SecondFactorFailed as exc:
            if not request.user.is_authenticated:
                return _session_ended(request)
            form.add_error("code", exc.message)
        else:
            return redirect(next_url or "home")
    return render(
        request,
        "account_security/step_up.html",
        {"form": form, "next": next_url},
        status=400 if form.errors else 200,
    )


# -- password reset --------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def password_reset(request: HttpRequest) -> HttpResponse:
    form = ResetRequestForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        actions.do_request_password_reset(
            form.cleaned_data["identifier"],
            site_url=_site_url(request),
            client=ClientInfo.from_request(request),
        )
        return redirect("account_security:password_reset_done")
    return render(request, "account_security/password_reset.html", {"form": form})


@require_safe
def password_reset_done(request: HttpRequest) -> HttpResponse:
    return render(request, "account_security/password_reset_done.html")


@require_http_methods(["GET", "POST"])
def password_reset_confirm(request: HttpRequest, uidb64: str, token: str) -> HttpResponse:
    user = recovery.user_from_link(uidb64, token)
    if user is None:
        return render(request, "account_security/password_reset_invalid.html")
    form = bind_form(request, NewPasswordForm, Purpose.PASSWORD_RESET, ("password1", "password2"))
    if request.method == "POST" and form.is_valid():
        try:
            actions.do_reset_password(
                user,
                password=form.cleaned_data["password1"],
                client=ClientInfo.from_request(request),
            )
        except ActionError as exc:
            _add_error(form, exc, "password1")
        else:
            if request.user.is_authenticated:
                # Whoever is logged in in this browser, the reset ends it (the epoch was bumped
                # for the account that was reset; any other account is simply logged out).
                sessions.end_session(request)
            messages.success(request, "Your password was changed. Log in with the new password.")
            return redirect("accounts:login")
    return render(
        request,
        "account_security/password_reset_confirm.html",
        {"form": form, "username": user.username},
        status=400 if form.errors else 200,
    )
