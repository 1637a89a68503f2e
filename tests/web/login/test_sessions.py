"""Sessions: rotated at login, bound to the client, idle and absolute timeouts (HIPAA automatic
logoff), "log out everywhere", and revocation of every session of a user at once."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from carevault.web.accounts.models import User
from carevault.web.audit.models import AuditEntry
from carevault.web.login import actions, sessions

pytestmark = pytest.mark.django_db

HOME = "/accounts/security/"  # any page every logged-in user may open
ME = "/api/v1/me"
LOGIN = "/accounts/login/"


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


def latest(action):
    return AuditEntry.objects.filter(action=action).order_by("-seq").first()


def session_cookie(client: Client) -> str:
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def thief_with(cookie: str, **defaults) -> Client:
    thief = Client(**defaults)
    thief.cookies[settings.SESSION_COOKIE_NAME] = cookie
    return thief


def move_session_times(client: Client, **seconds_back: int) -> None:
    """Move the stored login / last-seen times into the past."""
    session = client.session
    for key, back in seconds_back.items():
        stored = {"login": sessions.LOGIN_AT_KEY, "seen": sessions.SEEN_AT_KEY}[key]
        session[stored] = int(session[stored]) - back
    session.save()


def is_refused(response) -> bool:
    return response.status_code == 302 and response["Location"].startswith(LOGIN)


# -- starting a session ----------------------------------------------------------------------------


def test_a_login_rotates_the_session_key(users):
    client = Client()
    before = client.session
    before["planted"] = "by whoever chose this key"
    before.save()
    client.cookies[settings.SESSION_COOKIE_NAME] = before.session_key
    request = client.session.session_key
    client.force_login(users["doctor1"])
    assert session_cookie(client) != request
    assert client.get(HOME).status_code == 200


def test_a_login_records_the_epoch_the_times_and_an_opaque_client_binding(users):
    client = Client(HTTP_USER_AGENT="Firefox/140")
    client.force_login(users["doctor1"])
    session = client.session
    assert session[sessions.EPOCH_KEY] == users["doctor1"].session_epoch
    assert session[sessions.LOGIN_AT_KEY] == session[sessions.SEEN_AT_KEY]
    binding = session[sessions.BINDING_KEY]
    # An HMAC: neither the User-Agent nor the address is kept in the session store.
    assert len(binding) == 64
    assert "Firefox" not in str(dict(session.items()))
    assert "127.0.0.1" not in str(dict(session.items()))


def test_anonymous_requests_pass_untouched(client):
    assert client.get(reverse("accounts:login")).status_code == 200
    assert not AuditEntry.objects.filter(action="session.refused").exists()


# -- a stolen cookie -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "elsewhere",
    [{"HTTP_USER_AGENT": "curl/8.5"}, {"REMOTE_ADDR": "203.0.113.66"}],
    ids=["another-browser", "another-address"],
)
def test_a_stolen_session_cookie_used_from_another_client_is_refused_and_audited(
    client_for, elsewhere
):
    owner = client_for("doctor1")
    assert owner.get(HOME).status_code == 200
    thief = thief_with(session_cookie(owner), **elsewhere)
    response = thief.get(reverse("clinic:doctor_home"))
    assert is_refused(response)
    entry = latest("session.refused")
    assert (entry.actor, entry.outcome, entry.details["reason"]) == ("doctor1", "alert", "binding")
    assert entry.details["path"] == reverse("clinic:doctor_home")
    # The cookie is dead now, for the owner too: whoever else holds it gets nothing.
    assert is_refused(thief.get(HOME))
    assert is_refused(owner.get(HOME))


def test_a_stolen_cookie_on_the_api_gets_a_json_401(client_for):
    owner = client_for("doctor1")
    thief = thief_with(session_cookie(owner), HTTP_USER_AGENT="python-requests/2.32")
    response = thief.get(ME)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "session_ended"


def test_htmx_requests_are_sent_to_the_login_page_with_hx_redirect(client_for):
    owner = client_for("doctor1")
    thief = thief_with(session_cookie(owner), HTTP_USER_AGENT="curl/8.5")
    response = thief.get(reverse("clinic:doctor_home"), HTTP_HX_REQUEST="true")
    assert response.status_code == 204
    assert response["HX-Redirect"].startswith(LOGIN)


def test_a_session_no_login_request_started_is_refused(users):
    """Django's own force_login writes a session from a bare request: nobody logged in through
    this server, so there is no client to bind to. Such a session is refused, never bound to
    whoever presents it first."""
    client = Client()
    Client._login(client, users["doctor1"], "django.contrib.auth.backends.ModelBackend")
    response = client.get(HOME)
    assert is_refused(response)
    assert latest("session.refused").details["reason"] == "unbound"


def test_a_logged_in_session_missing_its_stamp_is_refused_as_unbound(client_for):
    client = client_for("doctor1")
    session = client.session
    del session[sessions.BINDING_KEY]
    session.save()
    assert is_refused(client.get(HOME))
    assert latest("session.refused").details["reason"] == "unbound"


# -- timeouts --------------------------------------------------------------------------------------


def test_an_idle_session_is_logged_out_with_a_message(client_for):
    client = client_for("patient1")
    move_session_times(client, seen=15 * 60 + 1, login=15 * 60 + 1)
    response = client.get(reverse("clinic:patient_home"))
    assert is_refused(response)
    assert "next=" in response["Location"]
    entry = latest("session.refused")
    assert (entry.actor, entry.outcome, entry.details["reason"]) == ("patient1", "denied", "idle")
    page = client.get(response["Location"])
    assert "without activity" in page.content.decode()
    assert is_refused(client.get(HOME))


def test_a_session_used_within_the_idle_limit_lives_on_and_is_seen_again(client_for):
    client = client_for("patient1")
    move_session_times(client, seen=14 * 60, login=14 * 60)
    before = client.session[sessions.SEEN_AT_KEY]
    assert client.get(reverse("clinic:patient_home")).status_code == 200
    assert client.session[sessions.SEEN_AT_KEY] > before


def test_the_idle_limit_comes_from_the_settings(client_for, settings):
    settings.SESSION_IDLE_MINUTES = 2
    client = client_for("patient1")
    move_session_times(client, seen=3 * 60)
    assert is_refused(client.get(HOME))
    assert latest("session.refused").details["reason"] == "idle"


def test_an_active_session_still_ends_at_the_absolute_limit(client_for):
    client = client_for("doctor2")
    move_session_times(client, login=8 * 3600 + 1)
    assert is_refused(client.get(HOME))
    assert latest("session.refused").details["reason"] == "expired"


def test_an_expired_session_on_the_api_gets_a_json_401(client_for):
    client = client_for("doctor2")
    move_session_times(client, seen=3600, login=3600)
    response = client.get(ME)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "session_ended"


# -- revocation ------------------------------------------------------------------------------------


def test_log_out_everywhere_ends_the_users_other_sessions_and_no_one_elses(client_for):
    laptop, phone = client_for("doctor1"), client_for("doctor1")
    colleague = client_for("doctor2")
    assert phone.get(HOME).status_code == 200
    page = laptop.get(reverse("account_security:overview")).content.decode()
    assert "Log out everywhere" in page
    response = laptop.post(reverse("account_security:logout_everywhere"))
    assert is_refused(response)
    assert is_refused(laptop.get(HOME))
    assert is_refused(phone.get(HOME))
    assert latest("session.refused").details["reason"] == "revoked"
    assert colleague.get(HOME).status_code == 200
    entry = latest("session.revoke_all")
    assert (entry.actor, entry.target_id) == ("doctor1", str(entry.actor_id))


def test_log_out_everywhere_takes_only_post(client_for):
    assert client_for("doctor1").get(reverse("account_security:logout_everywhere")).status_code == (
        405
    )


def test_revoke_all_sessions_ends_every_session_of_the_user_and_is_audited(client_for, users):
    browser, script = client_for("patient2"), client_for("patient2")
    actions.do_revoke_all_sessions(
        users["admin"], users["patient2"], reason="security response: token theft"
    )
    assert User.objects.get(username="patient2").session_epoch == users["patient2"].session_epoch
    assert users["patient2"].session_epoch == 1
    assert is_refused(browser.get(HOME))
    assert script.get(ME).status_code == 401
    entry = latest("session.revoke_all")
    assert entry.actor == "admin"
    assert entry.details == {"username": "patient2", "reason": "security response: token theft"}


def test_a_new_login_after_revocation_works(client_for, users):
    actions.do_revoke_all_sessions(None, users["patient3"], reason="test")
    fresh = User.objects.get(username="patient3")
    client = Client()
    client.force_login(fresh)
    assert client.get(HOME).status_code == 200
    assert client.session[sessions.EPOCH_KEY] == 1


def test_revocations_never_lose_a_bump(users):
    user = users["labtech1"]
    stale_copy = User.objects.get(pk=user.pk)
    actions.do_revoke_all_sessions(None, user, reason="first")
    actions.do_revoke_all_sessions(None, stale_copy, reason="second")
    assert User.objects.get(pk=user.pk).session_epoch == 2
