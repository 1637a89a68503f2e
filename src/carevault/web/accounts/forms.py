from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.contrib.auth.password_validation import password_validators_help_texts

from carevault.web.forms import BootstrapForm
from carevault.web.login.sealed_forms import SealedPasswordInput

from .models import Role


class _ActionErrorsForm(BootstrapForm):
    """Marks a field invalid also when the error comes from an action after validation
    (``form.add_error(exc.field, exc.message)``), not only from the form's own cleaning."""

    def add_error(self, field: str | None, error: Any) -> None:
        super().add_error(field, error)
        if field in self.fields:
            widget = self.fields[field].widget
            if "is-invalid" not in widget.attrs.get("class", ""):
                widget.attrs["class"] = f"{widget.attrs.get('class', '')} is-invalid".strip()


class RegistrationForm(_ActionErrorsForm):
    username = forms.CharField(max_length=150)
    # Sealed by the browser (sealed_forms.py): the input has no name, the packet carries it.
    password = forms.CharField(
        widget=SealedPasswordInput(attrs={"autocomplete": "new-password"}),
        max_length=200,
        strip=False,
    )
    name = forms.CharField(label="Full name", max_length=200)
    birth_date = forms.DateField(
        label="Date of birth", widget=forms.DateInput(attrs={"type": "date"})
    )
    email = forms.EmailField(required=False)
    phone = forms.CharField(required=False, max_length=40)

    def clean_birth_date(self) -> Any:
        value = self.cleaned_data["birth_date"]
        if value > dt.date.today():
            raise forms.ValidationError("Date of birth must be in the past.")
        return value


def _staff_role_choices() -> list[tuple[str, str]]:
    return [(value, label) for value, label in Role.choices if value != Role.PATIENT]


class StaffUserForm(_ActionErrorsForm):
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
