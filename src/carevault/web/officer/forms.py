from __future__ import annotations

from django import forms

from carevault.web.audit.log import Outcome
from carevault.web.forms import BootstrapForm

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
