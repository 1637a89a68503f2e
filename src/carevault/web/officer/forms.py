from __future__ import annotations

from django import forms
from django.contrib.auth.password_validation import password_validators_help_texts

from carevault.web.accounts.models import Role
from carevault.web.audit.log import Outcome
from carevault.web.forms import ActionErrorsForm, BootstrapForm
from carevault.web.login.sealed_forms import SealedPasswordInput

OUTCOMES = [("", "Any outcome")] + [
    (value, value) for value in (Outcome.OK, Outcome.DENIED, Outcome.FAILED, Outcome.ALERT)
]


class AuditFilterForm(BootstrapForm):
    action = forms.CharField(
        required=False,
        max_length=64,
        label="Action starts with",
        help_text="e.g. auth. or phi.read",
    )
    outcome = forms.ChoiceField(required=False, choices=OUTCOMES)
    actor = forms.CharField(required=False, max_length=150, label="Actor username")


def _staff_role_choices() -> list[tuple[str, str]]:
    return [(value, label) for value, label in Role.choices if value != Role.PATIENT]


class StaffUserForm(ActionErrorsForm):
    """A new staff account. The password is checked by Django's validators in the action."""

    username = forms.CharField(max_length=150)
    display_name = forms.CharField(
        label="Display name", max_length=120, help_text="How the product addresses them."
    )
    role = forms.ChoiceField(choices=_staff_role_choices)
    password = forms.CharField(
        label="Initial password",
        widget=SealedPasswordInput(attrs={"autocomplete": "new-password"}),
        max_length=200,
        strip=False,
        help_text=" ".join(password_validators_help_texts()),
    )


class RoleForm(BootstrapForm):
    role = forms.ChoiceField(choices=_staff_role_choices)
