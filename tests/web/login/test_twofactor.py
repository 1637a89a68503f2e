"""The TOTP second factor: enrolment with a QR code, the login's second step, replay protection,
recovery codes, unlocking a suspended account, step-up, and turning it off."""

from __future__ import annotations

import re
import time

import pytest
from django.conf import settings
from django.core.cache import cache
from django.http import HttpResponse
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone
from form_sealing import sealed_post

from carevault.crypto import DecryptionError, SecretBytes, otp
from carevault.web.accounts.models import RecoveryCode, User
from carevault.web.audit.models import AuditEntry
from carevault.web.login import factor_state, recovery, sessions, twofactor
from carevault.web.vault import service

pytestmark = pytest.mark.django_db

SETUP = reverse("account_security:totp_setup")
VERIFY = reverse("account_security:verify")
STEP_UP = reverse("account_security:step_up")
OVERVIEW = reverse("account_security:overview")
LOGIN = reverse("accounts:login")
ME = "/api/v1/me"


class Clock:
    """The second-factor clock (sessions.now), moved by hand one TOTP step at a time."""

    def __init__(self) -> None:
        self.now = float(int(time.time()) // 30 * 30 + 1)

    def __call__(self) -> float:
        return self.now

    def next_step(self, steps: int = 1) -> None:
        self.now += 30 * steps


@pytest.fixture(autouse=True)
def clock(monkeypatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(sessions, "now", fake)
    return fake


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


def latest(action):
    return AuditEntry.objects.filter(action=action).order_by("-seq").first()


def enrol(client: Client, clock: Clock, password: str) -> tuple[SecretBytes, list[str]]:
    """Turn TOTP on through the pages, as a user with an authenticator app would."""
    page = client.get(SETUP).content.decode()
    key = re.search(r'data-testid="totp-secret">([^<]+)<', page).group(1)
    secret = otp.secret_from_base32(key)
    response = sealed_post(
        client, SETUP, {"code": otp.totp_code(secret, clock.now), "password": password}
    )
    assert response.status_code == 200, response.content.decode()
    return secret, recovery_codes_in(response)


def recovery_codes_in(response: HttpResponse) -> list[str]:
    return re.findall(r"<li>([a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4})</li>", response.content.decode())


def give_totp(user: User) -> tuple[SecretBytes, list[str]]:
    """Turn TOTP on for ``user`` directly (tests about what comes after enrolment)."""
    secret = otp.generate_totp_secret()
    User.objects.filter(pk=user.pk).update(
        totp_wrapped=service.master().wrap(
            secret.expose(), {"purpose": "totp", "user": str(user.pk)}
        ),
        totp_confirmed_at=timezone.now(),
    )
    user.refresh_from_db()
    return secret, recovery.issue_recovery_codes(user)


def password_step(client: Client, packet_login, username: str, password: str) -> str:
    """The login's first step (an encrypted login packet); returns where the page goes next."""
    response = packet_login(client, username, password)
    assert response.status_code == 200, response.content.decode()
    return response.json()["next"]


def logged_in(client: Client) -> bool:
    return client.get(ME).status_code == 200


# -- enrolment -------------------------------------------------------------------------------------


def test_enrolment_shows_a_qr_code_and_the_key_and_waits_for_a_code(client_for, users):
    client = client_for("patient1")
    response = client.get(SETUP)
    assert response.status_code == 200
    html = response.content.decode()
    svg = re.search(r"<svg.*?</svg>", html, re.S).group(0)
    assert 'class="totp-qr"' in svg
    # The Content-Security-Policy (style-src 'self') would block inline style attributes.
    assert "style=" not in svg
    assert "<style" not in svg
    assert re.search(r'data-testid="totp-secret">(?:[A-Z2-7]{4} ){8}<', html)
    user = User.objects.get(username="patient1")
    assert not user.has_totp
    assert user.totp_wrapped


def test_a_reload_during_enrolment_shows_the_same_key(client_for):
    client = client_for("patient1")
    first = re.search(r'data-testid="totp-secret">([^<]+)<', client.get(SETUP).content.decode())
    again = re.search(r'data-testid="totp-secret">([^<]+)<', client.get(SETUP).content.decode())
    assert first.group(1) == again.group(1)


def test_a_secret_shown_to_another_session_is_never_the_one_that_gets_enrolled(
    client_for, clock, cast_password
):
    thief, owner = client_for("patient1"), client_for("patient1")
    seen = re.search(r'data-testid="totp-secret">([^<]+)<', thief.get(SETUP).content.decode())
    secret, _ = enrol(owner, clock, cast_password)
    assert otp.base32_secret(secret) != seen.group(1).replace(" ", "")
    assert User.objects.get(username="patient1").has_totp


def test_enrolment_turns_on_with_a_code_and_the_password_and_shows_recovery_codes_once(
    client_for, clock, cast_password
):
    client = client_for("patient1")
    _, codes = enrol(client, clock, cast_password)
    user = User.objects.get(username="patient1")
    assert user.has_totp
    assert user.totp_last_step == otp.current_step(clock.now)
    assert len(codes) == 10 == len(set(codes))
    stored = set(RecoveryCode.objects.filter(user=user).values_list("code_hash", flat=True))
    assert len(stored) == 10
    assert not stored & set(codes)
    assert latest("account.totp_enabled").actor == "patient1"
    # The codes are shown once: the overview only counts them.
    overview = client.get(OVERVIEW).content.decode()
    assert "10 unused recovery codes" in overview
    assert not any(code in overview for code in codes)


def test_the_secret_is_wrapped_and_bound_to_its_user(client_for, clock, cast_password, users):
    client = client_for("patient1")
    secret, _ = enrol(client, clock, cast_password)
    wrapped = bytes(User.objects.get(username="patient1").totp_wrapped)
    assert secret.expose() not in wrapped
    assert otp.base32_secret(secret).encode() not in wrapped
    pk = users["patient1"].pk
    assert service.master().unwrap(wrapped, {"purpose": "totp", "user": str(pk)}) == (
        secret.expose()
    )
    with pytest.raises(DecryptionError):
        service.master().unwrap(wrapped, {"purpose": "totp", "user": str(users["patient2"].pk)})


def test_enrolment_refuses_a_wrong_code(client_for, cast_password):
    client = client_for("patient1")
    client.get(SETUP)
    response = sealed_post(client, SETUP, {"code": "000000", "password": cast_password})
    assert response.status_code == 400
    assert "not valid" in response.content.decode()
    assert not User.objects.get(username="patient1").has_totp


def test_enrolment_needs_the_password_so_a_stolen_session_cannot_take_over_the_factor(
    client_for, clock
):
    client = client_for("patient1")
    page = client.get(SETUP).content.decode()
    key = re.search(r'data-testid="totp-secret">([^<]+)<', page).group(1)
    code = otp.totp_code(otp.secret_from_base32(key), clock.now)
    response = sealed_post(client, SETUP, {"code": code, "password": "not-the-password"})
    assert response.status_code == 400
    assert "password is not correct" in response.content.decode()
    assert not User.objects.get(username="patient1").has_totp
    assert User.objects.get(username="patient1").consecutive_failures == 1


# -- the login's second step -----------------------------------------------------------------------


def test_login_with_totp_goes_through_the_second_step(
    client, users, clock, packet_login, cast_password
):
    secret, _ = give_totp(users["doctor1"])
    next_url = password_step(client, packet_login, "doctor1", cast_password)
    assert next_url.startswith(VERIFY)
    assert not logged_in(client)
    assert client.get(next_url).status_code == 200
    wrong = client.post(VERIFY, {"code": "123456"})
    assert wrong.status_code == 400
    assert not logged_in(client)
    pending_key = client.cookies[settings.SESSION_COOKIE_NAME].value
    response = client.post(VERIFY, {"code": otp.totp_code(secret, clock.now)})
    assert response.status_code == 302
    assert logged_in(client)
    # The session that starts is a new one (rotated again), bound to this client.
    assert client.cookies[settings.SESSION_COOKIE_NAME].value != pending_key
    assert sessions.BINDING_KEY in client.session
    assert factor_state.PENDING_KEY not in client.session
    assert latest("auth.second_factor_failed").details == {"purpose": "login", "attempt": 1}
    assert latest("auth.login").actor == "doctor1"


def test_the_second_step_keeps_where_the_user_was_going(
    client, users, clock, packet_login, cast_password
):
    secret, _ = give_totp(users["doctor1"])
    target = reverse("clinic:doctor_home")
    response = packet_login(client, "doctor1", cast_password, query=f"?next={target}")
    next_url = response.json()["next"]
    assert next_url.startswith(VERIFY)
    answer = client.post(next_url, {"code": otp.totp_code(secret, clock.now), "next": target})
    assert answer["Location"] == target


def test_without_a_pending_login_the_verify_page_sends_to_the_login_page(client):
    response = client.get(VERIFY)
    assert response.status_code == 302
    assert response["Location"].startswith(LOGIN)


def test_a_replayed_code_is_refused(client, users, clock, packet_login, cast_password):
    secret, _ = give_totp(users["doctor1"])
    code = otp.totp_code(secret, clock.now)
    password_step(client, packet_login, "doctor1", cast_password)
    assert client.post(VERIFY, {"code": code}).status_code == 302
    # Someone who saw the code types it within the same 30 seconds, password in hand.
    other = Client(HTTP_USER_AGENT="shoulder-surfer")
    password_step(other, packet_login, "doctor1", cast_password)
    response = other.post(VERIFY, {"code": code})
    assert response.status_code == 400
    assert not logged_in(other)
    assert latest("auth.totp_replay").outcome == "alert"


def test_a_code_one_step_old_is_accepted_but_not_two(
    client, users, clock, packet_login, cast_password
):
    secret, _ = give_totp(users["doctor1"])
    old = otp.totp_code(secret, clock.now - 60)
    password_step(client, packet_login, "doctor1", cast_password)
    assert client.post(VERIFY, {"code": old}).status_code == 400
    assert client.post(VERIFY, {"code": otp.totp_code(secret, clock.now - 30)}).status_code == 302


def test_a_recovery_code_replaces_the_totp_code_once(client, users, packet_login, cast_password):
    _, codes = give_totp(users["patient2"])
    password_step(client, packet_login, "patient2", cast_password)
    assert client.post(VERIFY, {"code": codes[3].upper().replace("-", " ")}).status_code == 302
    assert logged_in(client)
    assert latest("account.recovery_code_used").details == {"purpose": "login", "remaining": 9}
    again = Client()
    password_step(again, packet_login, "patient2", cast_password)
    assert again.post(VERIFY, {"code": codes[3]}).status_code == 400
    assert not logged_in(again)


def test_too_many_wrong_codes_end_the_pending_login_and_count_as_failed_logins(
    client, users, packet_login, cast_password
):
    give_totp(users["doctor1"])
    password_step(client, packet_login, "doctor1", cast_password)
    for _ in range(twofactor.MAX_ATTEMPTS - 1):
        assert client.post(VERIFY, {"code": "000000"}).status_code == 400
    last = client.post(VERIFY, {"code": "000000"})
    assert last.status_code == 302
    assert last["Location"].startswith(LOGIN)
    assert factor_state.PENDING_KEY not in client.session
    assert User.objects.get(username="doctor1").consecutive_failures == twofactor.MAX_ATTEMPTS


def test_the_pending_login_expires_after_five_minutes(
    client, users, clock, packet_login, cast_password
):
    secret, _ = give_totp(users["doctor1"])
    password_step(client, packet_login, "doctor1", cast_password)
    clock.next_step(11)  # 5 min 30 s
    response = client.post(VERIFY, {"code": otp.totp_code(secret, clock.now)})
    assert response["Location"].startswith(LOGIN)
    assert not logged_in(client)


def test_a_pending_login_copied_to_another_client_is_useless(
    client, users, clock, packet_login, cast_password
):
    secret, _ = give_totp(users["doctor1"])
    password_step(client, packet_login, "doctor1", cast_password)
    thief = Client(HTTP_USER_AGENT="curl/8.5")
    thief.cookies[settings.SESSION_COOKIE_NAME] = client.cookies[settings.SESSION_COOKIE_NAME].value
    response = thief.post(VERIFY, {"code": otp.totp_code(secret, clock.now)})
    assert response["Location"].startswith(LOGIN)
    assert not logged_in(thief)


def test_a_suspended_user_with_totp_unlocks_the_account_with_the_second_factor(
    client, users, clock, packet_login, cast_password
):
    secret, _ = give_totp(users["patient1"])
    User.objects.filter(pk=users["patient1"].pk).update(
        suspended_at=timezone.now(), suspension_reason="20 consecutive failed logins"
    )
    password_step(client, packet_login, "patient1", cast_password)
    assert client.post(VERIFY, {"code": otp.totp_code(secret, clock.now)}).status_code == 302
    assert logged_in(client)
    assert not User.objects.get(username="patient1").is_suspended
    entry = latest("account.unsuspended")
    assert entry.actor == "patient1"
    assert "second factor" in entry.details["reason"]


def test_a_suspended_user_with_a_wrong_code_stays_suspended(
    client, users, packet_login, cast_password
):
    give_totp(users["patient1"])
    User.objects.filter(pk=users["patient1"].pk).update(suspended_at=timezone.now())
    password_step(client, packet_login, "patient1", cast_password)
    assert client.post(VERIFY, {"code": "999999"}).status_code == 400
    assert User.objects.get(username="patient1").is_suspended
    assert not logged_in(client)


# -- step-up ---------------------------------------------------------------------------------------


def test_step_up_holds_every_page_until_a_fresh_code_is_given(client_for, users, clock):
    secret, _ = give_totp(users["doctor1"])
    client = client_for("doctor1")
    page = reverse("clinic:doctor_home")
    assert client.get(page).status_code == 200
    # The security layer flags the session (by its key, from outside the request).
    store = sessions.session_store(client.cookies[settings.SESSION_COOKIE_NAME].value)
    factor_state.demand_step_up(store, "impossible travel")
    assert latest("session.step_up_demanded").details == {"reason": "impossible travel"}

    held = client.get(page)
    assert held.status_code == 302
    assert held["Location"] == f"{STEP_UP}?next=%2Fclinic%2Fdoctor%2F"
    api = client.get(ME)
    assert (api.status_code, api.json()["error"]["code"]) == (403, "step_up_required")
    assert client.get(STEP_UP).status_code == 200
    assert client.post(STEP_UP, {"code": "000000", "next": page}).status_code == 400
    assert client.get(page).status_code == 302

    clock.next_step()
    done = client.post(STEP_UP, {"code": otp.totp_code(secret, clock.now), "next": page})
    assert done["Location"] == page
    assert client.get(page).status_code == 200
    assert client.get(ME).status_code == 200
    entry = latest("session.step_up_passed")
    assert entry.details == {"reason": "impossible travel", "method": "totp"}


def test_logging_out_stays_possible_during_step_up(client_for, users):
    give_totp(users["doctor1"])
    client = client_for("doctor1")
    factor_state.demand_step_up(sessions.session_store(client.session.session_key), "risk")
    response = client.post(reverse("accounts:logout"))
    assert response.status_code == 302
    assert response["Location"].startswith(LOGIN)


def test_five_wrong_step_up_codes_end_the_session(client_for, users):
    give_totp(users["doctor1"])
    client = client_for("doctor1")
    factor_state.demand_step_up(sessions.session_store(client.session.session_key), "risk")
    for _ in range(twofactor.MAX_ATTEMPTS - 1):
        assert client.post(STEP_UP, {"code": "000000"}).status_code == 400
    last = client.post(STEP_UP, {"code": "000000"})
    assert last["Location"].startswith(LOGIN)
    assert latest("session.refused").details["reason"] == "too-many-codes"
    assert client.get(ME).status_code == 401


def test_step_up_without_totp_sends_the_user_to_enrol_first(client_for, clock, cast_password):
    client = client_for("labtech1")
    factor_state.demand_step_up(sessions.session_store(client.session.session_key), "new device")
    held = client.get(reverse("labs:queue"))
    assert held["Location"].startswith(SETUP)
    assert client.get(STEP_UP)["Location"].startswith(SETUP)
    page = client.get(held["Location"])
    assert page.status_code == 200
    assert "needs a second factor" in page.content.decode()
    enrol(client, clock, cast_password)
    assert client.get(reverse("labs:queue")).status_code == 200


def test_a_view_can_require_a_recent_second_factor(users, clock):
    give_totp(users["doctor1"])

    @factor_state.require_recent_second_factor(max_age_minutes=10)
    def sensitive(request):
        return HttpResponse("done")

    request = RequestFactory().get("/sensitive/")
    request.session = Client().session
    request.user = users["doctor1"]
    request.session[sessions.SECOND_FACTOR_AT_KEY] = int(clock.now)
    assert sensitive(request).content == b"done"
    clock.next_step(21)  # 10 min 30 s later
    response = sensitive(request)
    assert response["Location"] == f"{STEP_UP}?next=%2Fsensitive%2F"
    assert factor_state.step_up_demanded(request)


# -- turning it off, new recovery codes ------------------------------------------------------------


def test_turning_the_factor_off_needs_a_current_code(client_for, users, clock):
    secret, _ = give_totp(users["patient3"])
    client = client_for("patient3")
    response = client.post(reverse("account_security:totp_disable"), {"code": "111111"})
    assert response["Location"] == OVERVIEW
    assert User.objects.get(username="patient3").has_totp
    code = otp.totp_code(secret, clock.now)
    client.post(reverse("account_security:totp_disable"), {"code": code})
    user = User.objects.get(username="patient3")
    assert not user.has_totp
    assert not user.totp_wrapped
    assert not RecoveryCode.objects.filter(user=user).exists()
    assert latest("account.totp_disabled").actor == "patient3"


def test_new_recovery_codes_replace_the_old_ones(client_for, users, clock):
    secret, old = give_totp(users["patient3"])
    client = client_for("patient3")
    response = client.post(
        reverse("account_security:recovery_codes"), {"code": otp.totp_code(secret, clock.now)}
    )
    new = recovery_codes_in(response)
    assert len(new) == 10
    assert not set(new) & set(old)
    user = User.objects.get(username="patient3")
    assert not recovery.use_recovery_code(user, old[0])
    assert recovery.use_recovery_code(user, new[0])


def test_a_second_factor_login_first_ends_whoever_was_logged_in_in_that_browser(
    client_for, users, clock, packet_login, cast_password
):
    secret, _ = give_totp(users["doctor1"])
    client = client_for("doctor2")
    assert logged_in(client)
    password_step(client, packet_login, "doctor1", cast_password)
    assert not logged_in(client)
    client.post(VERIFY, {"code": otp.totp_code(secret, clock.now)})
    assert client.get(ME).json()["username"] == "doctor1"
