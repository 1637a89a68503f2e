"""End to end, in a real browser: each role logs in through the login form and does its main
task, with JavaScript (htmx) on and the Content-Security-Policy enforced.

Every page a test opens is watched for CSP violations (see ``login_as`` in conftest.py), and
each role leaves one screenshot in ``screenshot_dir`` for a person to look at."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from browser_helpers import REPORT_VIOLATIONS, ConsoleLog, LoginAs
from playwright.sync_api import Browser, Dialog, Page, Route, expect

from carevault.web import demo
from carevault.web.middleware import CONTENT_SECURITY_POLICY

pytestmark = pytest.mark.browser

ALICE = "Alice Wonderland-Smith"  # patient1, under doctor1's care
PHONE = {"width": 375, "height": 812}


def minimal_pdf(text: str) -> bytes:
    """A small, well-formed one-page PDF (with a correct cross-reference table)."""
    content = b"BT /F1 14 Tf 20 100 Td (" + text.encode("ascii") + b") Tj ET"
    objects = [
        b"<</Type/Catalog/Pages 2 0 R>>",
        b"<</Type/Pages/Kids[3 0 R]/Count 1>>",
        b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 300 200]/Contents 4 0 R"
        b"/Resources<</Font<</F1 5 0 R>>>>>>",
        b"<</Length %d>>\nstream\n%s\nendstream" % (len(content), content),
        b"<</Type/Font/Subtype/Type1/BaseFont/Helvetica>>",
    ]
    pdf = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(pdf))
        pdf += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(pdf)
    pdf += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    pdf += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    pdf += b"trailer\n<</Size %d/Root 1 0 R>>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(pdf)


def open_record_of(page: Page, name: str) -> None:
    """From the doctor's home page, open a patient's record."""
    row = page.locator("#section-patients tbody tr").filter(has_text=name)
    row.get_by_role("link", name="Open record").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(name)


def assert_fits_a_phone(page: Page) -> None:
    """No horizontal scrolling at phone width. On a mobile viewport Chromium zooms a too-wide page
    out (innerWidth grows past the screen's 375 px), so innerWidth is checked as well."""
    inner, scroll = page.evaluate("[window.innerWidth, document.documentElement.scrollWidth]")
    assert inner == PHONE["width"], f"{page.url} is zoomed out to {inner} px"
    assert scroll <= inner + 1, f"{page.url} scrolls sideways: {scroll} px wide"


def test_a_doctor_adds_a_note_a_prescription_and_a_lab_request(
    login_as: LoginAs, screenshot_dir: Path
) -> None:
    page = login_as("doctor1")
    expect(page.get_by_role("heading", name="My patients")).to_be_visible()
    patients = page.locator("#section-patients")
    expect(patients.locator("tbody tr").filter(has_text=ALICE)).to_have_count(1)
    expect(patients).not_to_contain_text("Chiamaka Okonkwo-Berg")  # doctor2's patient

    open_record_of(page, ALICE)
    record_url = page.url
    # Survives only as long as the document does: a full page load would drop it.
    page.evaluate("window.sameDocument = true")

    notes = page.locator("#section-notes")
    note = "Browser check: foot examination normal, monofilament sensation intact."
    notes.locator("summary", has_text="Add a note").click()
    notes.get_by_label("Note", exact=True).fill(note)
    notes.get_by_role("button", name="Add note").click()
    expect(notes.locator("li").filter(has_text=note)).to_have_count(1)
    assert page.url == record_url
    assert page.evaluate("window.sameDocument") is True

    prescriptions = page.locator("#section-prescriptions")
    prescriptions.locator("summary", has_text="Prescribe").click()
    prescriptions.get_by_label("Drug").fill("Atorvastatin")
    prescriptions.get_by_label("Dose").fill("20 mg once daily")
    prescriptions.get_by_label("Instructions").fill("Take in the evening.")
    prescriptions.get_by_role("button", name="Sign and prescribe").click()
    prescription = prescriptions.locator("tbody tr").filter(has_text="Atorvastatin")
    expect(prescription).to_contain_text("20 mg once daily")
    expect(prescription.locator(".badge")).to_have_text("Signature valid")

    labs = page.locator("#section-labs")
    labs.locator("summary", has_text="Request a lab test").click()
    labs.get_by_label("Test", exact=True).fill("Vitamin D (25-OH)")
    labs.get_by_label("Notes").fill("Morning sample")
    labs.get_by_role("button", name="Request test").click()
    lab_request = labs.locator("tbody tr").filter(has_text="Vitamin D (25-OH)")
    expect(lab_request).to_contain_text("Pending")
    expect(lab_request).to_contain_text(re.compile(r"Sample \S+"))

    assert page.url == record_url
    assert page.evaluate("window.sameDocument") is True
    page.screenshot(path=screenshot_dir / "doctor.png", full_page=True)


def test_a_patient_books_and_cancels_an_appointment_and_sees_who_read_their_record(
    login_as: LoginAs, screenshot_dir: Path
) -> None:
    page = login_as("patient1")
    expect(page.get_by_role("heading", name="My record")).to_be_visible()
    expect(page.locator("#section-demographics")).to_contain_text(ALICE)
    expect(page.locator("#section-prescriptions")).to_contain_text("Metformin")

    appointments = page.locator("#section-appointments")
    when = (dt.datetime.now(dt.UTC) + dt.timedelta(days=9)).replace(hour=10, minute=30)
    reason = "Browser check: review of home glucose readings"
    appointments.get_by_label("Doctor").select_option(label="Dr Meredith Grey")
    appointments.get_by_label("Date and time (UTC)").fill(when.strftime("%Y-%m-%dT%H:%M"))
    appointments.get_by_label("Reason").fill(reason)
    appointments.get_by_role("button", name="Request appointment").click()
    expect(appointments.get_by_role("status")).to_contain_text("Appointment requested")
    booked = appointments.locator("tbody tr").filter(has_text=reason)
    expect(booked).to_contain_text(when.strftime("%a %-d %b %Y, %H:%M"))
    expect(booked).to_contain_text("Dr Meredith Grey")
    expect(booked.locator(".badge")).to_have_text("Requested")

    page.evaluate("window.sameDocument = true")
    confirms: list[str] = []

    def accept(dialog: Dialog) -> None:
        confirms.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    booked.get_by_role("button", name="Cancel").click()
    expect(booked.locator(".badge")).to_have_text("Cancelled")
    expect(booked.get_by_role("button", name="Cancel")).to_have_count(0)
    assert confirms == ["Cancel this appointment?"]
    assert page.evaluate("window.sameDocument") is True
    page.screenshot(path=screenshot_dir / "patient.png", full_page=True)

    page.locator("main").get_by_role("link", name="Who accessed my record").click()
    expect(page.get_by_role("heading", name="Who accessed my record")).to_be_visible()
    doctor_reads = (
        page.locator("tbody tr").filter(has_text="doctor1").filter(has_text="Opened your record")
    )
    before = doctor_reads.count()

    doctor = login_as("doctor1")
    open_record_of(doctor, ALICE)

    page.reload()
    expect(doctor_reads).to_have_count(before + 1)
    expect(doctor_reads.first).to_contain_text("Doctor")
    expect(doctor_reads.first.locator(".badge")).to_have_text("OK")
    # The patient's own actions are hidden by default ("who accessed my record"); one click
    # shows them.
    expect(page.locator("tbody")).not_to_contain_text("Cancelled an appointment")
    page.get_by_role("link", name="Show them too").click()
    expect(page.locator("tbody tr").filter(has_text="Cancelled an appointment")).to_have_count(1)


def test_a_lab_technician_records_a_result_with_a_pdf(
    login_as: LoginAs, screenshot_dir: Path, tmp_path: Path
) -> None:
    page = login_as("labtech1")
    expect(page.get_by_role("heading", name="Lab queue")).to_be_visible()
    pending = page.locator("section[aria-labelledby=pending-heading]")
    waiting = pending.locator("tbody tr").filter(has_text="Lipid panel")
    expect(waiting).to_have_count(1)
    expect(waiting).to_contain_text("Fasting sample")
    sample = waiting.locator("code").inner_text().strip()
    assert sample
    for code in page.locator("main tbody code").all_inner_texts():
        assert code.strip(), "every queue row shows its sample code"
    shown = page.locator("body").inner_text()
    for patient in demo.PATIENTS:
        assert patient.name not in shown
        assert patient.mrn not in shown
    page.screenshot(path=screenshot_dir / "labtech.png", full_page=True)

    waiting.get_by_role("link", name="Record result").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Sample {sample}")
    assert ALICE not in page.locator("body").inner_text()
    report = tmp_path / "lipid-panel-report.pdf"
    report.write_bytes(minimal_pdf("Lipid panel: LDL 2.9 mmol/L"))
    page.get_by_label("Result values").fill("LDL 2.9 mmol/L\nHDL 1.4 mmol/L")
    page.get_by_label("Comment").fill("Borderline LDL.")
    page.get_by_label("Files").set_input_files(report)
    page.get_by_role("button", name="Sign and submit").click()

    expect(page.get_by_role("heading", name="Lab queue")).to_be_visible()
    expect(page.get_by_role("status")).to_have_text(
        f"The result for sample {sample} is recorded and signed."
    )
    expect(pending).not_to_contain_text(sample)
    expect(pending).to_contain_text("No tests are waiting.")
    done = page.locator("section[aria-labelledby=done-heading] tbody tr").filter(has_text=sample)
    expect(done).to_have_count(1)

    done.get_by_role("link", name="View result").click()
    expect(page.locator("[data-signature]")).to_have_text("Signature valid")
    expect(page.get_by_role("link", name="lipid-panel-report.pdf")).to_be_visible()
    expect(page.locator("main")).to_contain_text("application/pdf")


def test_the_security_officer_sees_an_intact_audit_chain_and_the_users(
    login_as: LoginAs, screenshot_dir: Path
) -> None:
    page = login_as("admin")
    expect(page.get_by_role("heading", name="Security dashboard")).to_be_visible()
    chain = page.locator(".card").filter(has_text="Audit chain")
    expect(chain.locator(".badge")).to_have_text("intact")
    expect(chain).to_contain_text(re.compile(r"\d+ entries verified"))
    audit = page.locator("#audit-table")
    own_login = audit.locator("tbody tr").filter(has_text="auth.login").filter(has_text="admin")
    expect(own_login.first).to_be_visible()
    page.screenshot(path=screenshot_dir / "admin.png", full_page=True)

    page.locator("main").get_by_role("link", name="Users").click()
    expect(page.get_by_role("heading", name="Users", exact=True)).to_be_visible()
    users = page.locator("main tbody")
    for username in ("admin", "doctor1", "doctor2", "labtech1", "patient1"):
        expect(users.get_by_role("link", name=username, exact=True)).to_be_visible()
    expect(users.locator("tr").filter(has_text="doctor1")).to_contain_text("Dr Meredith Grey")


def test_the_record_pages_fit_a_phone_screen(login_as: LoginAs, screenshot_dir: Path) -> None:
    phone = {"viewport": PHONE, "is_mobile": True, "has_touch": True}
    doctor = login_as("doctor1", **phone)
    expect(doctor.get_by_role("heading", name="My patients")).to_be_visible()
    assert_fits_a_phone(doctor)
    open_record_of(doctor, ALICE)
    assert_fits_a_phone(doctor)
    doctor.screenshot(path=screenshot_dir / "doctor-phone.png", full_page=True)

    patient = login_as("patient1", **phone)
    expect(patient.get_by_role("heading", name="My record")).to_be_visible()
    assert_fits_a_phone(patient)


def test_the_csp_check_sees_a_violation(browser: Browser) -> None:
    """The CSP watch above is not vacuous: under the server's policy Chromium refuses an inline
    script, and the console log reports it. (No server needed: the page is served by a route.)"""
    context = browser.new_context()
    context.add_init_script(REPORT_VIOLATIONS)
    page = context.new_page()
    console = ConsoleLog()
    console.watch(page)

    def serve(route: Route) -> None:
        route.fulfill(
            status=200,
            headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY},
            content_type="text/html",
            body="<!doctype html><p>CSP</p><script>window.inlineRan = true</script>",
        )

    page.route("http://carevault.test/**", serve)
    # The event's report comes after Chromium's own message (events are queued tasks).
    with page.expect_console_message(lambda m: m.text.startswith("securitypolicyviolation")):
        page.goto("http://carevault.test/")
    ran = page.evaluate("window.inlineRan === true")
    context.close()
    assert not ran
    violations = console.csp_violations()
    # Chromium 156 words it "Executing inline script violates the following Content Security
    # Policy directive ..." (older versions: "Refused to execute inline script ...").
    assert any("inline script" in v for v in violations), console.messages
    assert any("securitypolicyviolation: script-src" in v for v in violations), console.messages
