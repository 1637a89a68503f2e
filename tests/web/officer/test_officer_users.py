"""User administration pages: list, create staff accounts, change roles, (de)activate."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from form_sealing import sealed_post

from carevault.web.accounts.models import User
from carevault.web.audit.models import AuditEntry

pytestmark = pytest.mark.django_db

USERS = reverse("officer:users")
CREATE = reverse("officer:user_create")
STRONG = "Sturdy-Lantern-Orbit-42"


def edit_url(user):
    return reverse("officer:user_edit", args=[user.pk])


def latest(action):
    return AuditEntry.objects.filter(action=action).order_by("-seq").first()


def test_the_user_list_shows_every_account_with_role_and_status(client_for, users):
    User.objects.filter(username="labtech1").update(is_active=False)
    response = client_for("admin").get(USERS)
    assert response.status_code == 200
    html = response.content.decode()
    for username in users:
        assert username in html
    assert "Lab technician" in html
    assert "deactivated" in html
    assert response.context["page"].paginator.per_page == 25


def test_the_user_list_filters_by_role(client_for):
    page = client_for("admin").get(USERS, {"role": "doctor"}).context["page"]
    assert [u.username for u in page.object_list] == ["doctor1", "doctor2"]


def test_the_user_list_is_paginated(client_for):
    User.objects.bulk_create([User(username=f"staff{i:02d}", role="labtech") for i in range(30)])
    client = client_for("admin")
    first = client.get(USERS).context["page"]
    assert len(first.object_list) == 25
    assert first.paginator.num_pages == 2
    assert len(client.get(USERS, {"page": 2}).context["page"].object_list) == 12


def test_the_officer_creates_a_staff_account(client_for):
    response = sealed_post(
        client_for("admin"),
        CREATE,
        {
            "username": "doctor3",
            "display_name": "Dr Lisa Cuddy",
            "role": "doctor",
            "password": STRONG,
        },
    )
    user = User.objects.get(username="doctor3")
    assert response.status_code == 302
    assert response["Location"] == edit_url(user)
    assert user.role == "doctor"
    assert user.display_name == "Dr Lisa Cuddy"
    assert user.check_password(STRONG)
    assert not user.is_staff
    assert not user.is_superuser
    entry = latest("account.create")
    assert entry.actor == "admin"
    assert entry.target_id == str(user.pk)
    assert entry.details == {"username": "doctor3", "role": "doctor"}
    assert Client().login(username="doctor3", password=STRONG)


def test_a_weak_password_is_rejected_inline(client_for):
    response = sealed_post(
        client_for("admin"),
        CREATE,
        {
            "username": "labtech2",
            "display_name": "Lab Tech Two",
            "role": "labtech",
            "password": "password",
        },
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "This password is too short" in html
    assert "This password is too common" in html
    assert "is-invalid" in html
    assert 'value="labtech2"' in html  # the rest of the form is kept
    assert 'value="password"' not in html  # the password is not echoed back
    assert not User.objects.filter(username="labtech2").exists()


def test_the_create_form_offers_no_patient_role_and_refuses_one(client_for):
    client = client_for("admin")
    assert 'value="patient"' not in client.get(CREATE).content.decode()
    response = sealed_post(
        client,
        CREATE,
        {"username": "sneaky", "display_name": "Sneaky", "role": "patient", "password": STRONG},
    )
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert not User.objects.filter(username="sneaky").exists()


def test_a_taken_username_is_rejected_inline(client_for):
    response = sealed_post(
        client_for("admin"),
        CREATE,
        {"username": "Doctor1", "display_name": "Dr Copy", "role": "doctor", "password": STRONG},
    )
    assert "that username is taken" in response.content.decode()


def test_the_officer_changes_a_staff_role(client_for, users):
    response = client_for("admin").post(
        edit_url(users["doctor2"]), {"op": "role", "role": "labtech"}
    )
    assert response.status_code == 302
    users["doctor2"].refresh_from_db()
    assert users["doctor2"].role == "labtech"
    entry = latest("account.role_change")
    assert entry.details == {"username": "doctor2", "from": "doctor", "to": "labtech"}


def test_a_patient_account_cannot_become_staff(client_for, users):
    response = client_for("admin").post(
        edit_url(users["patient1"]), {"op": "role", "role": "doctor"}
    )
    assert response.status_code == 200
    assert "tied to a patient record" in response.content.decode()
    users["patient1"].refresh_from_db()
    assert users["patient1"].role == "patient"
    assert latest("account.role_change") is None


def test_a_staff_account_cannot_become_a_patient(client_for, users):
    response = client_for("admin").post(
        edit_url(users["doctor1"]), {"op": "role", "role": "patient"}
    )
    assert "tied to a patient record" in response.content.decode()
    users["doctor1"].refresh_from_db()
    assert users["doctor1"].role == "doctor"


def test_the_edit_page_of_a_patient_offers_no_role_change(client_for, users):
    html = client_for("admin").get(edit_url(users["patient2"])).content.decode()
    assert 'name="op" value="role"' not in html
    assert "tied to a patient record" in html


def set_password(user, password=STRONG):
    user.set_password(password)
    user.save(update_fields=["password"])


def test_a_deactivated_user_cannot_log_in_and_loses_open_sessions(client_for, users, packet_login):
    set_password(users["doctor1"])
    session = client_for("doctor1")
    assert session.get(reverse("api:me")).status_code == 200
    response = client_for("admin").post(edit_url(users["doctor1"]), {"op": "deactivate"})
    assert response.status_code == 302
    users["doctor1"].refresh_from_db()
    assert not users["doctor1"].is_active
    assert latest("account.deactivate").target_id == str(users["doctor1"].pk)
    assert session.get(reverse("api:me")).status_code == 401
    fresh = Client()
    login = packet_login(fresh, "doctor1", STRONG)
    assert (login.status_code, login.json()["ok"]) == (400, False)
    assert "_auth_user_id" not in fresh.session


def test_a_deactivated_user_can_be_reactivated(client_for, users):
    set_password(users["labtech1"])
    client = client_for("admin")
    client.post(edit_url(users["labtech1"]), {"op": "deactivate"})
    client.post(edit_url(users["labtech1"]), {"op": "activate"})
    users["labtech1"].refresh_from_db()
    assert users["labtech1"].is_active
    assert latest("account.activate").details["username"] == "labtech1"
    assert Client().login(username="labtech1", password=STRONG)


def test_the_officer_cannot_deactivate_themself(client_for, users):
    client = client_for("admin")
    assert 'value="deactivate"' not in client.get(edit_url(users["admin"])).content.decode()
    response = client.post(edit_url(users["admin"]), {"op": "deactivate"})
    assert response.status_code == 200
    assert "cannot deactivate your own account" in response.content.decode()
    users["admin"].refresh_from_db()
    assert users["admin"].is_active


def test_an_unknown_user_is_a_404(client_for):
    assert client_for("admin").get(reverse("officer:user_edit", args=[999999])).status_code == 404


def test_the_admin_nav_links_to_the_dashboard_and_users(client_for):
    html = client_for("admin").get(USERS).content.decode()
    assert f'href="{reverse("officer:dashboard")}"' in html
    assert f'href="{USERS}"' in html
