"""Forms of the clinic pages. They parse and bound the input; the rules that matter (what is
required, how long a break-glass reason must be, whether a slot is free) live in the actions,
which report them as :class:`carevault.web.errors.ActionError` on the same field names."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from django import forms

from carevault.web.accounts.models import Role, User
from carevault.web.forms import ActionErrorsForm, BootstrapForm
from carevault.web.login.sealed_forms import SealedPasswordInput

from .models import DataClass


class _PrefixedIds(BootstrapForm):
    """Several forms share a page: give each its own element ids (names stay plain)."""

    id_prefix = "form"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("auto_id", f"{self.id_prefix}_%s")
        super().__init__(*args, **kwargs)


def _textarea(rows: int = 3) -> forms.Textarea:
    return forms.Textarea(attrs={"rows": rows})


class PatientSearchForm(_PrefixedIds):
    id_prefix = "search"

    query = forms.CharField(
        label="MRN or e-mail",
        max_length=254,
        help_text="Exact medical record number or e-mail address.",
    )


class BreakGlassForm(_PrefixedIds):
    id_prefix = "breakglass"

    reason = forms.CharField(
        label="Clinical reason for emergency access",
        max_length=1000,
        widget=_textarea(2),
        help_text="Logged, reviewed by the security officer, and shown to the patient.",
    )


class DiagnosisForm(_PrefixedIds):
    id_prefix = "diagnosis"

    code = forms.CharField(label="Code (ICD-10)", max_length=32)
    description = forms.CharField(max_length=4000, widget=_textarea())
    data_class = forms.ChoiceField(
        label="Data class", choices=DataClass.choices, initial=DataClass.ORDINARY
    )


class NoteForm(_PrefixedIds):
    id_prefix = "note"

    body = forms.CharField(label="Note", max_length=20000, widget=_textarea(4))


class PrescriptionForm(_PrefixedIds):
    id_prefix = "prescription"

    drug = forms.CharField(max_length=200)
    dose = forms.CharField(max_length=200)
    instructions = forms.CharField(max_length=2000, widget=_textarea(2))


class LabRequestForm(_PrefixedIds):
    id_prefix = "lab"

    test = forms.CharField(max_length=200)
    notes = forms.CharField(required=False, max_length=4000, widget=_textarea(2))


if TYPE_CHECKING:  # generic in django-stubs only (no django_stubs_ext monkeypatch at runtime)
    _UserChoiceField = forms.ModelChoiceField[User]
else:
    _UserChoiceField = forms.ModelChoiceField


class DoctorChoiceField(_UserChoiceField):
    def label_from_instance(self, obj: User) -> str:
        return obj.label


class AppointmentForm(_PrefixedIds):
    id_prefix = "appointment"

    doctor = DoctorChoiceField(
        queryset=User.objects.filter(role=Role.DOCTOR, is_active=True).order_by(
            "display_name", "username"
        ),
        empty_label="Choose a doctor",
    )
    starts_at = forms.DateTimeField(
        label="Date and time (UTC)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    reason = forms.CharField(max_length=500, widget=_textarea(2))


class DecisionForm(forms.Form):
    decision = forms.ChoiceField(choices=[("confirm", "Confirm"), ("decline", "Decline")])


class RegistrationForm(ActionErrorsForm):
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
