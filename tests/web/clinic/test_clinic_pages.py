"""What every clinic page must be: strict-CSP clean, usable without JavaScript, no caching."""

from __future__ import annotations

import re

import pytest
from clinic_helpers import INLINE_SCRIPT, STYLE_ATTRIBUTE, text
from django.urls import reverse

pytestmark = pytest.mark.django_db


@pytest.fixture
def pages(client_for, patients):
    doctor, patient = client_for("doctor1"), client_for("patient1")
    return {
        "doctor home": doctor.get(reverse("clinic:doctor_home")),
        "doctor search": doctor.post(reverse("clinic:doctor_home"), {"query": "MRN-10000003"}),
        "patient detail": doctor.get(
            reverse("clinic:patient_detail", args=[patients["patient2"].pk])
        ),
        "patient home": patient.get(reverse("clinic:patient_home")),
        "patient history": patient.get(reverse("clinic:patient_history")),
    }


def test_the_pages_have_no_inline_script_or_style(pages):
    for name, response in pages.items():
        assert response.status_code == 200, name
        assert not INLINE_SCRIPT.search(text(response)), name
        assert not STYLE_ATTRIBUTE.search(text(response)), name


def test_the_pages_are_not_cached(pages):
    for name, response in pages.items():
        assert response["Cache-Control"] == "no-store", name


def test_every_htmx_form_also_posts_without_javascript(pages):
    for name in ("doctor home", "patient detail", "patient home"):
        forms = re.findall(r"<form[^>]*>", text(pages[name]))
        htmx = [f for f in forms if "hx-post=" in f]
        assert htmx, name
        for form in htmx:
            action = re.search(r' action="([^"]+)"', form)
            target = re.search(r' hx-post="([^"]+)"', form)
            assert 'method="post"' in form
            assert action, form
            assert target, form
            assert action.group(1) == target.group(1), form


def test_the_search_posts_so_an_mrn_never_reaches_a_url(pages):
    page = text(pages["doctor home"])
    assert 'method="get"' not in page.lower()


def test_the_nav_links_to_the_clinic_pages(pages):
    assert reverse("clinic:doctor_home") in text(pages["doctor home"])
    assert reverse("clinic:patient_history") in text(pages["patient home"])
