"""In a real browser, with htmx and the Content-Security-Policy: a long record shows its newest
slice, and "Show more" puts the next slice in place without leaving the page (issue 16)."""

from __future__ import annotations

import pytest
from browser_helpers import LoginAs
from playwright.sync_api import expect

from carevault.web.accounts.models import User
from carevault.web.clinic import actions
from carevault.web.clinic.models import Patient
from carevault.web.clinic.paging import RECORD_PAGE_SIZE

pytestmark = pytest.mark.browser

ALICE = "Alice Wonderland-Smith"


def test_show_more_adds_the_next_slice_of_notes_and_prescriptions_in_place(
    login_as: LoginAs,
) -> None:
    doctor = User.objects.get(username="doctor1")
    patient = Patient.objects.get(user__username="patient1")
    for i in range(RECORD_PAGE_SIZE + 2):
        actions.do_add_note(doctor, patient, body=f"Browser slice note {i:03d}")
        actions.do_prescribe(
            doctor, patient, drug=f"Slice drug {i:03d}", dose="1 mg", instructions="Daily."
        )
    page = login_as("doctor1")
    page.goto(f"/clinic/patients/{patient.pk}/")
    expect(page.get_by_role("heading", level=1)).to_have_text(ALICE)
    page.evaluate("window.sameDocument = true")

    notes = page.locator("#section-notes")
    expect(notes.locator("li").filter(has_text="Browser slice note")).to_have_count(
        RECORD_PAGE_SIZE
    )
    expect(notes).not_to_contain_text("Browser slice note 000")
    notes.get_by_role("link", name="Show older clinical notes").click()
    expect(notes.locator("li").filter(has_text="Browser slice note")).to_have_count(
        RECORD_PAGE_SIZE + 2
    )
    expect(notes).to_contain_text("improved glucose control")  # the seeded note, oldest
    expect(notes.get_by_role("link", name="Show older clinical notes")).to_have_count(0)

    prescriptions = page.locator("#section-prescriptions")
    prescriptions.get_by_role("link", name="Show older prescriptions").click()
    rows = prescriptions.locator("tbody tr")
    expect(rows.filter(has_text="Slice drug 000")).to_have_count(1)
    expect(rows.filter(has_text="Metformin").locator(".badge")).to_have_text("Signature valid")
    assert page.evaluate("window.sameDocument") is True
