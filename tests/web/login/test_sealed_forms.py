"""Every form that carries a password takes it only sealed: the pages render password inputs
without a name, the server refuses a readable password with a message that says why, and a
packet opens once, for its own form only; every refusal is the same opaque form error."""

from __future__ import annotations

import json
import re

import pytest
from django.core.cache import caches
from django.urls import reverse
from form_sealing import seal_form, sealed_post

from carevault.web.accounts.models import User
from carevault.web.audit.models import AuditEntry
from carevault.web.login import challenges, recovery, sealed_forms, throttle

pytestmark = pytest.mark.django_db

REGISTER = reverse("accounts:register")
SETUP = reverse("account_security:totp_setup")
CREATE = reverse("officer:user_create")
STRONG = "Sturdy-Lantern-Orbit-42"
FORM = {
    "username": "sealedpatient",
    "password": STRONG,
    "name": "Sam Sealed",
    "birth_date": "1984-02-29",
}
WITHOUT_PASSWORD = {k: v for k, v in FORM.items() if k != "password"}
STAFF = {"username": "doctor7", "display_name": "Dr Seven", "role": "doctor", "password": STRONG}


@pytest.fixture(autouse=True)
def _fresh_caches():
    caches["default"].clear()
    caches[challenges.CACHE_ALIAS].clear()


def refusals(action: str = "auth.packet_rejected") -> list[dict[str, str]]:
    return [e.details for e in AuditEntry.objects.filter(action=action).order_by("seq")]


@pytest.mark.parametrize(
    ("who", "url"),
    [(None, REGISTER), ("doctor1", SETUP), ("admin", CREATE)],
)
def test_every_password_form_renders_its_password_without_a_name(client_for, who, url):
    html = client_for(who).get(url).content.decode()
    assert 'type="password"' in html
    assert not re.search(r'<input[^>]*type="password"[^>]*name=', html)
    assert 'data-sealed-field="password"' in html
    assert 'name="sealed_packet"' in html
    assert "js/sealed-form" in html
    assert "<script>" not in html  # no inline script: the page works under the CSP
    assert "JavaScript is required" in html


def reset_path(user: User) -> str:
    link = recovery.reset_link(user, site_url="http://testserver")
    return "/" + link.split("/", 3)[3]


def test_the_reset_form_seals_both_passwords(client, users):
    path = reset_path(users["patient1"])
    html = client.get(path).content.decode()
    assert 'data-sealed-field="password1"' in html
    assert 'data-sealed-field="password2"' in html
    assert not re.search(r'<input[^>]*type="password"[^>]*name=', html)
    fields = {"password1": "Brand-New-Pass-77", "password2": "Brand-New-Pass-77"}
    assert sealed_post(client, path, fields).status_code == 302
    assert User.objects.get(username="patient1").check_password("Brand-New-Pass-77")


def test_a_sealed_registration_creates_the_account(client):
    response = sealed_post(client, REGISTER, FORM)
    assert response.status_code == 302
    assert User.objects.get(username="sealedpatient").check_password(STRONG)
    assert refusals() == []


def test_a_readable_password_is_refused_with_a_message_that_says_why(client):
    response = client.post(REGISTER, FORM)
    assert response.status_code == 200
    html = response.content.decode()
    assert "readable form is not accepted" in html
    assert "JavaScript" in html
    assert not User.objects.filter(username="sealedpatient").exists()
    # Not a refused packet (the security layer would count it as an attack): its own action.
    assert refusals("auth.form_unsealed") == [{"reason": "plain_password", "form": "register"}]
    assert refusals() == []


def test_a_post_without_the_packet_says_javascript_is_needed(client):
    data = {k: v for k, v in FORM.items() if k != "password"}
    html = client.post(REGISTER, data).content.decode()
    assert "This form needs JavaScript" in html
    assert "This field is required" not in html  # the person did type a password
    assert 'value="Sam Sealed"' in html  # the rest of the form is kept


def test_a_packet_works_once(client):
    data = seal_form(client, REGISTER, FORM)
    assert client.post(REGISTER, data).status_code == 302
    again = client.post(REGISTER, data | {"username": "someoneelse"})
    assert sealed_forms.SEAL_FAILED in again.content.decode()
    assert not User.objects.filter(username="someoneelse").exists()
    assert refusals() == [{"reason": "replay", "form": "register"}]


def test_a_packet_for_another_form_does_not_open(client_for):
    admin = client_for("admin")
    data = seal_form(admin, CREATE, STAFF, purpose="register")
    response = admin.post(CREATE, data)
    assert sealed_forms.SEAL_FAILED in response.content.decode()
    assert not User.objects.filter(username="doctor7").exists()
    assert refusals() == [{"reason": "tampered", "form": "staff-user"}]


@pytest.mark.parametrize("packet", ["", "{", "[]", '{"cid": "x"}', "x" * 9000])
def test_a_malformed_packet_is_the_same_opaque_error(client, packet):
    data = {k: v for k, v in FORM.items() if k != "password"}
    response = client.post(REGISTER, data | {"sealed_packet": packet})
    assert response.status_code == 200
    html = response.content.decode()
    assert (sealed_forms.SEAL_FAILED in html) or (sealed_forms.JAVASCRIPT_NEEDED in html)
    assert not User.objects.filter(username="sealedpatient").exists()


def test_a_tampered_packet_is_refused(client):
    data = seal_form(client, REGISTER, FORM)
    packet = json.loads(data["sealed_packet"])
    packet["ct"] = ("A" if packet["ct"][0] != "A" else "B") + packet["ct"][1:]
    response = client.post(REGISTER, data | {"sealed_packet": json.dumps(packet)})
    assert sealed_forms.SEAL_FAILED in response.content.decode()
    assert refusals()[-1]["reason"] in ("tampered", "malformed")


def test_the_officers_new_user_form_takes_a_sealed_password(client_for):
    response = sealed_post(client_for("admin"), CREATE, STAFF)
    assert response.status_code == 302
    assert User.objects.get(username="doctor7").check_password(STRONG)


def test_the_officers_new_user_form_refuses_a_readable_password(client_for):
    response = client_for("admin").post(CREATE, STAFF)
    assert "readable form is not accepted" in response.content.decode()
    assert not User.objects.filter(username="doctor7").exists()


def test_every_refusal_passes_through_one_function(client, monkeypatch):
    seen = []
    monkeypatch.setattr(
        sealed_forms, "refuse", lambda request, purpose, reason: seen.append(reason)
    )
    client.post(REGISTER, FORM)
    client.post(REGISTER, {k: v for k, v in FORM.items() if k != "password"})
    assert seen == ["plain_password", "no_packet"]


def test_junk_form_packets_from_a_blocked_address_are_counted_not_audited_one_row_each(client):
    throttle.block_address("127.0.0.1", "a test's block")
    before = AuditEntry.objects.count()
    for _ in range(30):
        client.post(REGISTER, {**WITHOUT_PASSWORD, "sealed_packet": "junk"})
    new = list(AuditEntry.objects.order_by("seq")[before:])
    assert [e.action for e in new] == ["auth.refused_counted", "auth.refused_run"]
    assert throttle.refused_count("127.0.0.1") == 30


def test_forged_form_packets_count_towards_the_address_limit_like_forged_login_packets(
    client, settings
):
    settings.LOGIN_ADDRESS_MAX_FORGED_PACKETS = 3
    for _ in range(3):
        client.post(REGISTER, {**WITHOUT_PASSWORD, "sealed_packet": "junk"})
    assert throttle.is_blocked("127.0.0.1")
    assert len(refusals()) == 3
