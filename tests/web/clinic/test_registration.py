"""Self-registration makes patients, and only patients."""

from __future__ import annotations

import re

import pytest
from django.core.cache import caches
from django.test import Client
from django.urls import reverse
from form_sealing import sealed_post

from carevault.web.accounts.models import User
from carevault.web.clinic.models import Patient

pytestmark = pytest.mark.django_db

FORM = {
    "username": "newpatient",
    "password": "Sturdy-Lantern-Orbit-42",
    "name": "Dana Example",
    "birth_date": "1990-05-17",
    "email": "dana@example.org",
}


@pytest.mark.parametrize("role", ["admin", "doctor", "labtech"])
def test_registration_creates_only_patients_even_if_a_role_is_posted(client, role):
    response = sealed_post(
        client,
        reverse("accounts:register"),
        FORM | {"role": role, "is_staff": "on", "is_superuser": "on"},
    )
    assert response.status_code == 302
    user = User.objects.get(username="newpatient")
    assert user.role == "patient"
    assert not user.is_staff
    assert not user.is_superuser
    patient = Patient.objects.get(user=user)
    assert patient.unseal("name") == "Dana Example"


def test_the_registration_page_offers_no_role(client):
    html = client.get(reverse("accounts:register")).content.decode()
    assert 'name="role"' not in html


def test_registration_rejects_a_weak_password_inline(client):
    response = sealed_post(client, reverse("accounts:register"), FORM | {"password": "password"})
    assert response.status_code == 200
    assert "too common" in response.content.decode()
    assert not User.objects.filter(username="newpatient").exists()


# -- taken names and the rate limit ---------------------------------------------------------------


@pytest.fixture(autouse=True)
def _fresh_allowance():
    """The per-address registration count of earlier tests must not decide this one."""
    caches["default"].clear()


def shown_username(client, response) -> str:
    page = client.get(response["Location"]).content.decode()
    return re.search(r"Your username is ([^:<]+):", page).group(1)


def test_a_taken_username_is_never_reported_the_account_gets_a_free_variant(client):
    response = sealed_post(client, reverse("accounts:register"), FORM | {"username": "Patient1"})
    assert response.status_code == 302
    username = shown_username(client, response)
    assert re.fullmatch(r"Patient1-\d{4}", username)
    user = User.objects.get(username=username)
    assert user.role == "patient"
    assert User.objects.get(username="patient1").patient.unseal("name") != "Dana Example"


def test_a_free_and_a_taken_name_get_the_same_answer(client):
    free = sealed_post(Client(), reverse("accounts:register"), FORM)
    taken = sealed_post(
        Client(), reverse("accounts:register"), FORM | {"username": "doctor1", "email": ""}
    )
    assert free.status_code == taken.status_code == 302
    assert free["Location"] == taken["Location"]
    assert "taken" not in Client().get(free["Location"]).content.decode()


def test_registrations_are_limited_per_address_with_a_clear_message(client, settings):
    settings.REGISTRATIONS_PER_HOUR = 2
    for i in range(2):
        answer = sealed_post(client, reverse("accounts:register"), FORM | {"username": f"p{i}"})
        assert answer.status_code == 302
    refused = sealed_post(client, reverse("accounts:register"), FORM | {"username": "p2"})
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) <= 3600
    assert "Too many accounts were registered from your network" in refused.content.decode()
    assert not User.objects.filter(username="p2").exists()
    # Another address is not affected.
    other = sealed_post(
        Client(REMOTE_ADDR="203.0.113.9"), reverse("accounts:register"), FORM | {"username": "p3"}
    )
    assert other.status_code == 302


def test_a_registration_that_fails_validation_does_not_use_the_allowance(client, settings):
    settings.REGISTRATIONS_PER_HOUR = 1
    weak = sealed_post(client, reverse("accounts:register"), FORM | {"password": "password"})
    assert weak.status_code == 200
    assert sealed_post(client, reverse("accounts:register"), FORM).status_code == 302


def test_a_limit_of_zero_turns_self_registration_off_and_says_so(client, settings):
    settings.REGISTRATIONS_PER_HOUR = 0
    response = sealed_post(client, reverse("accounts:register"), FORM)
    assert response.status_code == 403
    assert "Registration on this site is turned off" in response.content.decode()
    assert not User.objects.filter(username="newpatient").exists()
