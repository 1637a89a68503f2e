"""accounts.actions: staff accounts are made and changed only by officers, always audited,
and the patient role is never given or taken away."""

from __future__ import annotations

import pytest

from carevault.web.accounts import actions
from carevault.web.accounts.models import User
from carevault.web.audit.models import AuditEntry
from carevault.web.errors import NotAllowed, ValidationFailed

pytestmark = pytest.mark.django_db

STRONG = "Sturdy-Lantern-Orbit-42"


def latest(action):
    return AuditEntry.objects.filter(action=action).order_by("-seq").first()


def create(acting_user, **overrides):
    fields = {"username": "newdoc", "display_name": "Dr New", "role": "doctor", "password": STRONG}
    return actions.do_create_staff_user(acting_user, **(fields | overrides))


@pytest.mark.parametrize("role", ["doctor", "labtech", "admin"])
def test_it_creates_each_staff_role(users, role):
    user = create(users["admin"], role=role)
    assert user.role == role
    assert user.check_password(STRONG)
    entry = latest("account.create")
    assert (entry.actor, entry.target_type, entry.target_id) == (
        "admin",
        "accounts.user",
        str(user.pk),
    )


def test_it_refuses_to_create_patients(users):
    with pytest.raises(ValidationFailed, match="patients register themselves") as exc:
        create(users["admin"], role="patient")
    assert exc.value.field == "role"
    assert not User.objects.filter(username="newdoc").exists()


def test_it_refuses_an_unknown_role(users):
    with pytest.raises(ValidationFailed, match="staff role"):
        create(users["admin"], role="superuser")


def test_it_refuses_a_weak_password_with_the_validators_messages(users):
    with pytest.raises(ValidationFailed, match="too short") as exc:
        create(users["admin"], password="abc123")
    assert exc.value.field == "password"
    assert not User.objects.filter(username="newdoc").exists()


def test_it_refuses_a_password_like_the_username(users):
    with pytest.raises(ValidationFailed, match="too similar"):
        create(users["admin"], username="margaretlewis", password="margaretlewis1")


def test_it_refuses_a_taken_username_whatever_its_case(users):
    with pytest.raises(ValidationFailed, match="taken"):
        create(users["admin"], username="LabTech1")


def test_it_refuses_a_malformed_username(users):
    with pytest.raises(ValidationFailed, match="letters, digits"):
        create(users["admin"], username="bad name!")


def test_it_needs_a_display_name(users):
    with pytest.raises(ValidationFailed, match="display name is required"):
        create(users["admin"], display_name="  ")


@pytest.mark.parametrize("username", ["doctor1", "labtech1", "patient1"])
def test_only_officers_manage_accounts(users, username):
    with pytest.raises(NotAllowed):
        create(users[username])
    with pytest.raises(NotAllowed):
        actions.do_change_role(users[username], users["doctor2"], "labtech")
    with pytest.raises(NotAllowed):
        actions.do_set_active(users[username], users["doctor2"], False)


def test_it_changes_a_staff_role_and_audits_both_roles(users):
    actions.do_change_role(users["admin"], users["labtech1"], "doctor")
    assert User.objects.get(username="labtech1").role == "doctor"
    assert users["labtech1"].role == "doctor"
    assert latest("account.role_change").details == {
        "username": "labtech1",
        "from": "labtech",
        "to": "doctor",
    }


def test_setting_the_same_role_again_changes_and_audits_nothing(users):
    before = AuditEntry.objects.count()
    actions.do_change_role(users["admin"], users["doctor1"], "doctor")
    assert AuditEntry.objects.count() == before


def test_it_refuses_to_make_a_patient_staff(users):
    with pytest.raises(ValidationFailed, match="tied to a patient record"):
        actions.do_change_role(users["admin"], users["patient1"], "admin")
    assert User.objects.get(username="patient1").role == "patient"


def test_it_refuses_to_make_staff_a_patient(users):
    with pytest.raises(ValidationFailed, match="tied to a patient record"):
        actions.do_change_role(users["admin"], users["doctor1"], "patient")
    assert User.objects.get(username="doctor1").role == "doctor"


def test_it_refuses_an_unknown_role_change(users):
    with pytest.raises(ValidationFailed, match="unknown role"):
        actions.do_change_role(users["admin"], users["doctor1"], "root")


def test_an_officer_cannot_change_their_own_role(users):
    with pytest.raises(NotAllowed, match="your own role"):
        actions.do_change_role(users["admin"], users["admin"], "doctor")
    assert User.objects.get(username="admin").role == "admin"


def test_it_deactivates_and_reactivates_with_audit_entries(users):
    actions.do_set_active(users["admin"], users["patient3"], False)
    assert not User.objects.get(username="patient3").is_active
    assert latest("account.deactivate").target_id == str(users["patient3"].pk)
    actions.do_set_active(users["admin"], users["patient3"], True)
    assert User.objects.get(username="patient3").is_active
    assert latest("account.activate").target_id == str(users["patient3"].pk)


def test_an_officer_cannot_deactivate_themself(users):
    with pytest.raises(NotAllowed, match="your own account"):
        actions.do_set_active(users["admin"], users["admin"], False)
    assert User.objects.get(username="admin").is_active


def test_a_deactivated_officer_can_do_nothing(users):
    other = create(users["admin"], username="officer2", role="admin")
    actions.do_set_active(users["admin"], other, False)
    with pytest.raises(NotAllowed):
        actions.do_set_active(other, users["admin"], False)
