from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms

from carevault.web.forms import BootstrapForm


class RegistrationForm(BootstrapForm):
    username = forms.CharField(max_length=150)
    password = forms.CharField(widget=forms.PasswordInput, max_length=200)
    name = forms.CharField(label="Full name", max_length=200)
    birth_date = forms.DateField(label="Date of birth", widget=forms.DateInput(attrs={"type": "date"}))
    email = forms.EmailField(required=False)
    phone = forms.CharField(required=False, max_length=40)

    def clean_birth_date(self) -> Any:
        value = self.cleaned_data["birth_date"]
        if value > dt.date.today():
            raise forms.ValidationError("Date of birth must be in the past.")
        return value
