"""Login protection on the security officer's dashboard: suspended accounts (with Lift) and
blocked client addresses (with Unblock). Both actions are htmx, work without JavaScript, and are
audited; only officers may use them."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.middleware import SessionMiddleware
from django.core.cache import cache
from django.http import HttpResponse
from django.test import RequestFactory
from django.urls import reverse

from carevault.web.accounts.models import User
from carevault.web.audit.models import AuditEntry
from carevault.web.clientinfo import NO_CLIENT
from carevault.web.errors import NotAllowed
from carevault.web.login import actions as login_actions
from carevault.web.login import flow, throttle
from carevault.web.login.flow import LoginOutcome

pytestmark = pytest.mark.django_db

DASHBOARD = reverse("officer:dashboard")
UNBLOCK = reverse("officer:unblock_address")
ATTACKER = "198.51.100.66"
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture(autouse=True)
def _clear_cache():
    cache.clear()
    yield
    cache.clear()


def lift_url(user):
    return reverse("officer:lift_suspension", args=[user.pk])


def suspend(username, settings):
    for n in range(settings.LOGIN_SUSPEND_AFTER):
        throttle.record_failure(username, f"203.0.113.{n + 1}")
    return User.objects.get(username=username)


def block(address, settings):
    # Names nobody has, as a sprayer tries them: the unknown-names rate is not what is shown.
    settings.LOGIN_ADDRESS_UNKNOWN_PER_MINUTE = 10**6
    for n in range(settings.LOGIN_ADDRESS_MAX_USERNAMES):
        throttle.record_failure(f"sprayed{n}", address)


def log_in(username, password, address="192.0.2.10"):
    request = RequestFactory().post("/accounts/login/", REMOTE_ADDR=address)
    SessionMiddleware(lambda _: HttpResponse()).process_request(request)
    request.user = AnonymousUser()
    return flow.attempt_password_login(request, username, password).outcome


def test_the_dashboard_lists_suspended_accounts_with_since_and_reason(client_for, settings):
    suspend("patient2", settings)
    html = client_for("admin").get(DASHBOARD).content.decode()
    assert 'id="suspensions"' in html
    assert "patient2" in html
    assert f"{settings.LOGIN_SUSPEND_AFTER} consecutive failed logins" in html
    assert User.objects.get(username="patient2").suspended_at.strftime("%Y-%m-%d %H:%M") in html
    assert lift_url(User.objects.get(username="patient2")) in html


def test_the_dashboard_says_when_nothing_is_suspended_or_blocked(client_for):
    html = client_for("admin").get(DASHBOARD).content.decode()
    assert "No account is suspended." in html
    assert "No address is blocked." in html


def test_the_officer_lifts_a_suspension_and_the_owner_can_log_in(
    client_for, settings, cast_password
):
    patient = suspend("patient2", settings)
    assert log_in("patient2", cast_password) is LoginOutcome.PAUSED
    response = client_for("admin").post(lift_url(patient), **HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Suspension of patient2 lifted." in html
    assert "No account is suspended." in html
    patient.refresh_from_db()
    assert not patient.is_suspended
    assert patient.consecutive_failures == 0
    entry = AuditEntry.objects.get(action="account.unsuspended")
    assert (entry.actor, entry.target_id) == ("admin", str(patient.pk))
    assert entry.details["reason"] == "lifted by a security officer"
    assert log_in("patient2", cast_password) is LoginOutcome.SUCCESS


def test_without_javascript_lifting_returns_to_the_dashboard(client_for, settings):
    patient = suspend("doctor2", settings)
    client = client_for("admin")
    response = client.post(lift_url(patient), follow=True)
    assert response.redirect_chain == [(DASHBOARD, 302)]
    assert "Suspension of doctor2 lifted." in response.content.decode()


def test_lifting_an_account_that_is_not_suspended_says_so_and_audits_nothing(client_for, users):
    response = client_for("admin").post(lift_url(users["doctor1"]), **HTMX)
    assert "doctor1 was not suspended." in response.content.decode()
    assert not AuditEntry.objects.filter(action="account.unsuspended").exists()


def test_lifting_an_unknown_account_is_refused_and_audited(client_for):
    response = client_for("admin").post(reverse("officer:lift_suspension", args=[987654]), **HTMX)
    assert response.status_code == 404
    assert AuditEntry.objects.filter(action="access.denied", target_id="987654").exists()


def test_the_dashboard_lists_blocked_addresses_and_the_officer_unblocks_one(
    client_for, settings, cast_password
):
    block(ATTACKER, settings)
    block("2001:db8::66", settings)
    client = client_for("admin")
    html = client.get(DASHBOARD).content.decode()
    assert ATTACKER in html
    assert "2001:db8::66" in html
    limit = settings.LOGIN_ADDRESS_MAX_USERNAMES
    assert f"failed logins against {limit} account names in 15 min" in html
    assert log_in("patient1", cast_password, address=ATTACKER) is LoginOutcome.PAUSED

    response = client.post(UNBLOCK, {"address": ATTACKER}, **HTMX)
    html = response.content.decode()
    assert f"{ATTACKER} unblocked." in html
    assert 'name="address" value="2001:db8::66"' in html
    assert f'value="{ATTACKER}"' not in html
    entry = AuditEntry.objects.get(action="auth.address_unblocked")
    assert (entry.actor, entry.details["address"]) == ("admin", ATTACKER)
    assert log_in("patient1", cast_password, address=ATTACKER) is LoginOutcome.SUCCESS


def test_unblocking_takes_the_address_in_any_spelling(client_for, settings):
    block("2001:db8::66", settings)
    response = client_for("admin").post(UNBLOCK, {"address": "2001:DB8:0::66"}, **HTMX)
    assert "2001:db8::66 unblocked." in response.content.decode()
    assert throttle.blocked_addresses() == []


def test_unblocking_something_that_is_not_an_address_changes_nothing(client_for, settings):
    block(ATTACKER, settings)
    client = client_for("admin")
    for value in ("", "not-an-address", "198.51.100.66; DROP"):
        response = client.post(UNBLOCK, {"address": value}, **HTMX)
        assert "That is not a client address." in response.content.decode()
    assert [b.address for b in throttle.blocked_addresses()] == [ATTACKER]
    assert not AuditEntry.objects.filter(action="auth.address_unblocked").exists()


def test_unblocking_an_address_that_is_not_blocked_says_so(client_for):
    response = client_for("admin").post(UNBLOCK, {"address": "192.0.2.99"}, **HTMX)
    assert "192.0.2.99 was not blocked." in response.content.decode()
    assert not AuditEntry.objects.filter(action="auth.address_unblocked").exists()


@pytest.mark.parametrize("username", ["doctor1", "labtech1", "patient1"])
def test_only_officers_lift_suspensions_or_unblock_addresses(client_for, users, settings, username):
    patient = suspend("patient2", settings)
    block(ATTACKER, settings)
    client = client_for(username)
    assert client.post(lift_url(patient), **HTMX).status_code == 403
    assert client.post(UNBLOCK, {"address": ATTACKER}, **HTMX).status_code == 403
    with pytest.raises(NotAllowed):
        login_actions.do_lift_suspension(users[username], patient, client=NO_CLIENT)
    with pytest.raises(NotAllowed):
        login_actions.do_unblock_address(users[username], ATTACKER, client=NO_CLIENT)
    patient.refresh_from_db()
    assert patient.is_suspended
    assert [b.address for b in throttle.blocked_addresses()] == [ATTACKER]


def test_suspensions_and_blocks_count_as_alerts_on_the_dashboard(client_for, settings):
    client = client_for("admin")
    before = client.get(DASHBOARD).context["counts"]["alerts"]
    suspend("patient3", settings)
    block(ATTACKER, settings)
    assert client.get(DASHBOARD).context["counts"]["alerts"] == before + 2
