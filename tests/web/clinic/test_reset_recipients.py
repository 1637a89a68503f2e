"""The clinic tells password reset (login) where a patient's link goes: the address on the
patient record. Login never imports the clinic; the clinic registers the lookup at start-up."""

from __future__ import annotations

import pytest

from carevault.web.clinic.reset_recipients import reset_recipients
from carevault.web.login import recovery

pytestmark = pytest.mark.django_db

# patient1 in the demo seed.
PATIENT1_EMAIL = "alice.smith@example.org"


def test_the_clinic_registers_its_lookup_with_password_reset(users):
    assert recovery.recipients(PATIENT1_EMAIL) == [(users["patient1"], PATIENT1_EMAIL)]


def test_a_patient_is_found_by_e_mail_address_and_by_username(users):
    assert reset_recipients(PATIENT1_EMAIL) == [(users["patient1"], PATIENT1_EMAIL)]
    assert reset_recipients("PATIENT1") == [(users["patient1"], PATIENT1_EMAIL)]


def test_staff_and_unknown_names_have_no_recipient(users):
    assert reset_recipients("doctor1") == []
    assert reset_recipients("nobody@example.org") == []
