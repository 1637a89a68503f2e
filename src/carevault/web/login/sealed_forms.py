"""Forms that carry a password take it only inside a sealed form packet (issue 12).

Registration, two-factor enrolment, the password-reset link and the officer's new-user form
never receive a readable password. Their password inputs have no ``name`` (a submission that
bypasses ``static/js/sealed-form.js`` sends no password), and the script puts the sealed packet
in the hidden field :data:`PACKET_FIELD`: it fetches a login challenge (the same single-use
challenges as the login, ``challenges.issue``/``consume``), seals ``{field name: value}`` with
:func:`carevault.crypto.packets.seal_form_packet` for the form's purpose and path, and submits.

:func:`bind_form` is the view's side: it opens the packet from the POST, puts the fields back
into a copy of the form data and binds the form to it. Any failure (no packet, a plain password
field, a malformed, tampered, replayed, late or foreign packet) leaves the form bound without the
password and with one form error; every refusal goes through :func:`refuse`, the one place to
count or audit them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, TypeVar

from django import forms
from django.http import HttpRequest, QueryDict
from django.utils.html import format_html

from carevault.crypto import DecryptionError
from carevault.crypto.errors import RejectedPacketError
from carevault.crypto.packets import MAX_PACKET_BYTES, LoginPacket, open_form_packet
from carevault.web.audit.log import Outcome, record
from carevault.web.clientinfo import ClientInfo
from carevault.web.vault import service

from . import challenges, throttle

__all__ = [
    "JAVASCRIPT_NEEDED",
    "PACKET_FIELD",
    "READABLE_REFUSED",
    "SEAL_FAILED",
    "Purpose",
    "SealedPasswordInput",
    "bind_form",
    "open_packet",
    "purpose_for_url_name",
    "refuse",
]

PACKET_FIELD = "sealed_packet"

# What the person is told. One message for every packet failure, as the login gives one answer.
SEAL_FAILED = "Your password could not be sent securely. Please try again."
JAVASCRIPT_NEEDED = (
    "This form needs JavaScript: your browser encrypts the password before it leaves it. "
    "Please allow JavaScript for this site and try again."
)
READABLE_REFUSED = (
    "A password sent in readable form is not accepted here: your browser must encrypt it "
    "(this needs JavaScript). Please allow JavaScript for this site and try again."
)


class Purpose(StrEnum):
    """Which form a packet was sealed for (it is in the packet's associated data)."""

    REGISTER = "register"
    TOTP_ENROL = "totp-enrol"
    PASSWORD_RESET = "password-reset"  # noqa: S105 - a form name
    STAFF_USER = "staff-user"


# URL name -> the purpose of the form served there (the test helper finds purposes by it).
_PURPOSE_BY_URL_NAME = {
    "accounts:register": Purpose.REGISTER,
    "account_security:totp_setup": Purpose.TOTP_ENROL,
    "account_security:password_reset_confirm": Purpose.PASSWORD_RESET,
    "officer:user_create": Purpose.STAFF_USER,
}


def purpose_for_url_name(url_name: str) -> Purpose | None:
    return _PURPOSE_BY_URL_NAME.get(url_name)


class SealedRefused(Exception):
    """The form's password did not arrive sealed; ``message`` is for the person."""

    def __init__(self, reason: str, message: str = SEAL_FAILED) -> None:
        super().__init__(reason)
        self.reason = reason
        self.message = message


class SealedPasswordInput(forms.PasswordInput):
    """A password input without a ``name``: only sealed-form.js reads it (``data-sealed-field``
    says which field it fills), so no plain submission can carry the password."""

    def render(
        self, name: str, value: Any, attrs: dict[str, Any] | None = None, renderer: Any = None
    ) -> Any:
        final = self.build_attrs(self.attrs, attrs)
        return format_html(
            '<input type="password" data-sealed-field="{}" id="{}" class="{}" '
            'autocomplete="{}" required>',
            name,
            final.get("id", f"id_{name}"),
            final.get("class", "form-control"),
            final.get("autocomplete", "new-password"),
        )


# A form posted without its packet is an honest browser without JavaScript far more often than
# an attack: it is audited under its own action, which the security layer does not score.
UNSEALED_REASONS = frozenset({"plain_password", "no_packet"})


def refuse(request: HttpRequest, purpose: str, reason: str) -> None:
    """Every refused form post passes here (one place to count, throttle or audit them).

    A packet that is malformed, tampered, replayed, late or foreign is audited as a refused
    login packet is (``auth.packet_rejected``, with the form's purpose), so the security layer
    weighs it the same way; a form that came without any packet is ``auth.form_unsealed``.
    """
    client = ClientInfo.from_request(request)
    address = client.address
    if throttle.is_blocked(address):
        # From a blocked address refusals are counted (one summary audit row per window), never
        # audited one row each: junk posted at a blocked address cannot fill the audit log.
        throttle.count_refused(address, f"form {purpose} {reason}", client=client)
        return
    if reason in UNSEALED_REASONS:
        record(
            "auth.form_unsealed",
            outcome=Outcome.FAILED,
            client=ClientInfo.from_request(request),
            details={"reason": reason, "form": purpose},
        )
        return
    record(
        "auth.packet_rejected",
        outcome=Outcome.FAILED,
        client=ClientInfo.from_request(request),
        details={"reason": reason, "form": purpose},
    )
    # A forged or replayed form packet is the same evidence as a forged login packet.
    throttle.record_forged_packet(address, reason, client=client)


def open_packet(request: HttpRequest, purpose: str, fields: tuple[str, ...]) -> dict[str, str]:
    """The sealed fields of the POST, checked to be exactly ``fields``; or :class:`SealedRefused`.

    The challenge is consumed before the packet is opened, so a packet is used at most once,
    whether it opens or not.
    """
    if any(name in request.POST for name in fields):
        raise SealedRefused("plain_password", READABLE_REFUSED)
    raw = request.POST.get(PACKET_FIELD, "")
    if not raw:
        raise SealedRefused("no_packet", JAVASCRIPT_NEEDED)
    if len(raw) > MAX_PACKET_BYTES:
        raise SealedRefused("malformed")
    try:
        packet = LoginPacket.parse(raw)
    except DecryptionError:
        raise SealedRefused("malformed") from None
    try:
        pending = challenges.consume(packet.cid)
    except challenges.ChallengeRefused as exc:
        raise SealedRefused(exc.reason) from None
    key = service.login_key()
    if key.key_id != pending.key_id:
        key = service.login_key(reload=True)
    try:
        opened = open_form_packet(
            key,
            packet,
            pending.nonce,
            pending.cid,
            purpose=purpose,
            binding=request.path,
            expires=pending.expires,
            now=challenges.now(),
        )
    except DecryptionError:
        raise SealedRefused("tampered") from None
    except RejectedPacketError as exc:
        raise SealedRefused(exc.reason) from None
    if set(opened) != set(fields):
        raise SealedRefused("wrong_fields")
    return opened


F = TypeVar("F", bound=forms.BaseForm)


def bind_form(
    request: HttpRequest,
    form_class: type[F],
    purpose: Purpose,
    fields: tuple[str, ...] = ("password",),
    **kwargs: Any,
) -> F:
    """``form_class`` for this request: unbound for a GET, bound to the POST with its sealed
    ``fields`` opened. If they cannot be opened the form is bound without them, carries one
    error saying what to do, and is not valid."""
    if request.method != "POST":
        return form_class(**kwargs)
    data: QueryDict = request.POST.copy()
    data.pop(PACKET_FIELD, None)
    for name in fields:
        data.pop(name, None)
    try:
        opened = open_packet(request, purpose, fields)
    except SealedRefused as exc:
        refuse(request, purpose, exc.reason)
        form = form_class(data, **kwargs)
        for name in fields:
            # "This field is required" would only confuse: the person did type it.
            form.errors.pop(name, None)
        form.add_error(None, exc.message)
        return form
    for name, value in opened.items():
        data[name] = value
    return form_class(data, **kwargs)
