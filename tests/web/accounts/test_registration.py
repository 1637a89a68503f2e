"""Self-registration makes patients, and only patients."""

from __future__ import annotations

import pytest
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
