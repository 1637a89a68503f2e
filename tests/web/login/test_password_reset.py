"""Password reset: the same answer for every account (existing or not), an encrypted outbox, a
single-use link that expires, and a reset that ends every session and lifts a suspension."""

from __future__ import annotations

import datetime as dt
import re
import time

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from form_sealing import sealed_post

from carevault.web.accounts import outbox
from carevault.web.accounts.models import User
from carevault.web.audit.models import AuditEntry
from carevault.web.login import recovery

pytestmark = pytest.mark.django_db

RESET = reverse("account_security:password_reset")
DONE = reverse("account_security:password_reset_done")
ME = "/api/v1/me"
NEW_PASSWORD = "Quiet-Harbour-Lamp-57"
# patient1 in the demo seed.
PATIENT1_EMAIL = "alice.smith@example.org"


@pytest.fixture(autouse=True)
def mail(settings, tmp_path):
    """The encrypted outbox (pytest-django would swap in its in-memory backend), in a folder of
    the test's own, and no minimum answer time unless a test sets one."""
    settings.EMAIL_BACKEND = "carevault.web.accounts.outbox.EncryptedOutboxBackend"
    settings.EMAIL_OUTBOX_DIR = tmp_path / "outbox"
    settings.PASSWORD_RESET_MIN_SECONDS = 0
    cache.clear()
    yield settings.EMAIL_OUTBOX_DIR
    cache.clear()


def latest(action):
    return AuditEntry.objects.filter(action=action).order_by("-seq").first()


def ask(client: Client, identifier: str):
    return client.post(RESET, {"identifier": identifier})


def link_in(message: outbox.OutboxMessage) -> str:
    return re.search(r"http://testserver(/\S+/)", message.body).group(1)


def reset_link_for(client: Client, identifier: str = PATIENT1_EMAIL) -> str:
    ask(client, identifier)
    return link_in(outbox.read_outbox()[-1])


# -- asking ----------------------------------------------------------------------------------------


def test_unknown_and_known_accounts_get_the_identical_answer(client):
    identifiers = [
        "patient1",  # a patient, by username
        PATIENT1_EMAIL,  # a patient, by e-mail
        "PATIENT2",  # any case
        "doctor1",  # staff: no e-mail address, nothing is sent
        "no-such-user",
        "nobody@example.org",
    ]
    answers = []
    for identifier in identifiers:
        visitor = Client()
        response = ask(visitor, identifier)
        page = visitor.get(response["Location"]).content.decode()
        # Everything the visitor gets, but the CSRF token (random on every page).
        page = re.sub(r'"X-CSRFToken": "[^"]+"', "", page)
        cookies = sorted(response.cookies.keys())
        answers.append(
            (response.status_code, response["Location"], response.content, cookies, page)
        )
    assert all(answer == answers[0] for answer in answers)
    status, location, body, cookies, page = answers[0]
    assert (status, location, body, cookies) == (302, DONE, b"", [])
    assert "If an account matches" in page
    sent = outbox.read_outbox()
    assert sorted(m.to[0] for m in sent) == sorted(
        [PATIENT1_EMAIL, PATIENT1_EMAIL, "bart.quigley@example.org"]
    )


def test_the_answer_takes_the_same_minimum_time_whether_or_not_a_message_is_sent(client, settings):
    settings.PASSWORD_RESET_MIN_SECONDS = 0.25
    for identifier in ("patient1", "no-such-user"):
        started = time.monotonic()
        ask(Client(), identifier)
        assert time.monotonic() - started >= 0.25


def test_the_outbox_message_is_encrypted_on_disk_and_holds_a_working_link(client, mail):
    ask(client, PATIENT1_EMAIL)
    files = list(mail.glob("*.msg"))
    assert len(files) == 1
    raw = files[0].read_bytes()
    (message,) = outbox.read_outbox()
    link = link_in(message)
    for clear in (PATIENT1_EMAIL, "alice", "example.org", "patient1", link, "password"):
        assert clear.encode().lower() not in raw.lower(), clear
    assert "alice" not in files[0].name
    assert message.to == [PATIENT1_EMAIL]
    assert message.subject == "Reset your CareVault password"
    assert "patient1" in message.body
    assert "30 minutes" in message.body

    form = client.get(link)
    assert form.status_code == 200
    assert "Choose a new password" in form.content.decode()
    done = sealed_post(client, link, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert done["Location"] == reverse("accounts:login")
    assert User.objects.get(username="patient1").check_password(NEW_PASSWORD)
    entry = latest("account.password_reset")
    assert (entry.actor, entry.details["username"]) == ("patient1", "patient1")
    assert latest("account.password_reset_requested").details == {
        "username": "patient1",
        "channel": "email",
    }


def test_an_outbox_file_moved_to_another_name_does_not_open(client, mail):
    ask(client, PATIENT1_EMAIL)
    ask(Client(), "patient2")
    first, second = sorted(mail.glob("*.msg"))
    first.write_bytes(second.read_bytes())
    with pytest.raises(Exception, match="decryption failed"):
        outbox.read_outbox()


def test_messages_to_one_account_are_limited_per_hour(client):
    for _ in range(recovery.RESETS_PER_HOUR + 2):
        assert ask(Client(), "patient1")["Location"] == DONE
    assert len(outbox.read_outbox()) == recovery.RESETS_PER_HOUR


def test_an_empty_request_is_asked_again(client):
    response = client.post(RESET, {"identifier": ""})
    assert response.status_code == 200
    assert not outbox.read_outbox()


# -- the link --------------------------------------------------------------------------------------


def test_a_reset_link_works_once(client):
    link = reset_link_for(client)
    sealed_post(client, link, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    again = Client().get(link)
    assert "not valid" in again.content.decode()
    second = Client().post(
        link, {"password1": "Other-Pass-Word-91", "password2": "Other-Pass-Word-91"}
    )
    assert "not valid" in second.content.decode()
    assert User.objects.get(username="patient1").check_password(NEW_PASSWORD)


def test_a_reset_link_expires_after_thirty_minutes(client, monkeypatch):
    link = reset_link_for(client)
    later = dt.datetime.now() + dt.timedelta(minutes=31)
    monkeypatch.setattr(recovery.tokens, "_now", lambda: later)
    response = sealed_post(client, link, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert "not valid" in response.content.decode()
    assert not User.objects.get(username="patient1").check_password(NEW_PASSWORD)


def test_a_link_still_works_within_thirty_minutes(client, monkeypatch):
    link = reset_link_for(client)
    later = dt.datetime.now() + dt.timedelta(minutes=29)
    monkeypatch.setattr(recovery.tokens, "_now", lambda: later)
    assert "Choose a new password" in client.get(link).content.decode()


def test_a_link_for_another_account_does_not_work(client, users):
    link = reset_link_for(client)
    parts = link.strip("/").split("/")
    from django.utils.encoding import force_bytes
    from django.utils.http import urlsafe_base64_encode

    parts[-2] = urlsafe_base64_encode(force_bytes(users["patient2"].pk))
    forged = "/" + "/".join(parts) + "/"
    assert "not valid" in client.get(forged).content.decode()


def test_a_weak_new_password_is_refused_and_the_link_still_works(client):
    link = reset_link_for(client)
    weak = sealed_post(client, link, {"password1": "password", "password2": "password"})
    assert weak.status_code == 400
    assert "too common" in weak.content.decode()
    assert "Choose a new password" in client.get(link).content.decode()


def test_the_two_passwords_must_match(client):
    link = reset_link_for(client)
    response = sealed_post(
        client, link, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD + "x"}
    )
    assert response.status_code == 400
    assert not User.objects.get(username="patient1").check_password(NEW_PASSWORD)


# -- what a reset does -----------------------------------------------------------------------------


def test_a_reset_ends_every_session_and_lifts_a_suspension(client_for, users):
    logged_in = client_for("patient1")
    assert logged_in.get(ME).status_code == 200
    User.objects.filter(pk=users["patient1"].pk).update(
        suspended_at=timezone.now(), suspension_reason="20 consecutive failed logins"
    )
    browser = Client()
    link = reset_link_for(browser)
    sealed_post(browser, link, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert logged_in.get(ME).status_code == 401
    user = User.objects.get(username="patient1")
    assert not user.is_suspended
    assert user.session_epoch == users["patient1"].session_epoch + 1
    assert latest("session.revoke_all").details["reason"] == "password reset"
    assert "password reset" in latest("account.unsuspended").details["reason"]
    # The reset does not log anyone in: the new password goes through the login (and its
    # second factor, if the account has one).
    assert browser.get(ME).status_code == 401


def test_a_flood_from_one_address_is_answered_alike_but_sends_nothing_more(client):
    for _ in range(recovery.RESET_REQUESTS_PER_ADDRESS):
        ask(client, "no-such-user")
    assert ask(client, "patient1")["Location"] == DONE
    assert not outbox.read_outbox()
    assert latest("account.password_reset_throttled").outcome == "alert"
    # Another address is not affected.
    ask(Client(REMOTE_ADDR="198.51.100.20"), "patient1")
    assert len(outbox.read_outbox()) == 1
