"""The diagnosis form: the 30 features (blank ones may come from a lab result), the model."""

from __future__ import annotations

from typing import Any

from django import forms

from carevault.modelguard import dataset
from carevault.modelguard.models import KINDS


def field_name(index: int) -> str:
    return f"f{index}"


class DiagnosisForm(forms.Form):
    model = forms.ChoiceField(
        choices=[(k, "Logistic regression" if k == "logistic" else "Tree ensemble") for k in KINDS]
    )
    lab_result = forms.ChoiceField(required=False, label="Take features from lab result")

    def __init__(self, *args: Any, lab_results: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        lab_field = self.fields["lab_result"]
        assert isinstance(lab_field, forms.ChoiceField)
        lab_field.choices = [("", "— enter them below —"), *lab_results]
        for i, name in enumerate(dataset.feature_names()):
            self.fields[field_name(i)] = forms.FloatField(
                required=False, label=name, widget=forms.NumberInput(attrs={"step": "any"})
            )

    def entered(self) -> dict[str, float]:
        """The features typed in (blank ones left out)."""
        out = {}
        for i, name in enumerate(dataset.feature_names()):
            value = self.cleaned_data.get(field_name(i))
            if value is not None:
                out[name] = float(value)
        return out
