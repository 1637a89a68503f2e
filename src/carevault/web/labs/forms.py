"""Forms of the lab technician's pages. They parse input only: every rule about files (size,
type by content, count) lives in :mod:`carevault.web.labs.actions`, the one place the API and
the web share."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.template.defaultfilters import filesizeformat
from django.utils.functional import lazy

from carevault.web.forms import BootstrapForm

from .actions import MAX_FILES
from .storage import SIGNATURES


class MultipleFileInput(forms.FileInput):
    """``<input type=file multiple>``; its value is the list of uploaded files."""

    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    widget = MultipleFileInput

    def clean(self, data: Any, initial: Any = None) -> list[UploadedFile]:
        # No per-file checks here on purpose: the action checks size, emptiness and content, so
        # a file refused here and a file refused there read the same to the technician.
        items = data if isinstance(data, list | tuple) else [data]
        files = [f for f in items if isinstance(f, UploadedFile)]
        if self.required and not files:
            raise forms.ValidationError(self.error_messages["required"], code="required")
        return files


def request_limit() -> int:
    """The largest upload request the in-memory handler accepts (files plus form fields)."""
    return int(settings.FILE_UPLOAD_MAX_MEMORY_SIZE)


def files_help_text() -> str:
    # Evaluated when rendered, so the limits shown are the ones enforced (tests override them).
    each = filesizeformat(settings.LAB_UPLOAD_MAX_BYTES)
    # The whole request must fit the in-memory upload handler (see views._uploads_dropped).
    together = filesizeformat(min(MAX_FILES * settings.LAB_UPLOAD_MAX_BYTES, request_limit()))
    return (
        f"Up to {MAX_FILES} PDF, PNG or JPEG files (checked by their content), "
        f"{each} each and {together} together."
    )


class LabResultForm(BootstrapForm):
    values = forms.CharField(
        label="Result values",
        max_length=4000,
        widget=forms.Textarea(attrs={"rows": 5}),
        help_text="One measurement per line, with its unit.",
    )
    comment = forms.CharField(
        max_length=2000, required=False, widget=forms.Textarea(attrs={"rows": 2})
    )
    # Named like the actions' error field ("files"). Django moves declared fields off the class,
    # so this does not shadow the form's ``files`` (the uploaded-files dict) at run time.
    files = MultipleFileField(  # type: ignore[assignment]
        label="Files",
        required=False,
        widget=MultipleFileInput(attrs={"accept": ",".join(SIGNATURES)}),
        help_text=lazy(files_help_text, str)(),
    )

    def add_error(self, field: str | None, error: Any) -> None:
        # BootstrapForm marks invalid fields during full_clean; errors from the actions arrive
        # after it, so mark those fields here too.
        super().add_error(field, error)
        if field in self.fields:
            widget = self.fields[field].widget
            if "is-invalid" not in widget.attrs.get("class", ""):
                widget.attrs["class"] = f"{widget.attrs.get('class', '')} is-invalid".strip()
