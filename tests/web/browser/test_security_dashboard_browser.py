"""The security layer's part of the officer's dashboard in a real browser, under the enforced
Content-Security-Policy: the risk chart is drawn by the locally served Chart.js from the JSON
endpoint, and an incident is acknowledged with htmx."""

from __future__ import annotations

import pytest
from browser_helpers import LoginAs
from django.utils import timezone
from playwright.sync_api import expect

from carevault.web.securitycore.models import Incident, IncidentSubject

pytestmark = pytest.mark.browser

CHART_DRAWN = """() => {
  const canvas = document.getElementById("risk-timeline");
  const chart = window.Chart && window.Chart.getChart(canvas);
  return Boolean(chart) && chart.data.labels.length === 60 && chart.data.datasets.length >= 3;
}"""


def test_the_officer_sees_the_risk_chart_and_acknowledges_an_incident(login_as: LoginAs) -> None:
    now = timezone.now()
    incident = Incident.objects.create(
        opened_at=now,
        updated_at=now,
        title="Failed logins: address 198.51.100.7",
        level=2,
        risk=0.72,
        explanation="event #1: risk 0.72 (contain) on login_failure from 198.51.100.7",
        event_count=31,
    )
    IncidentSubject.objects.create(incident=incident, key="address:198.51.100.7")
    page = login_as("admin")
    page.wait_for_function(CHART_DRAWN)
    row = page.locator("#incidents tr.security-incident").filter(has_text="198.51.100.7")
    expect(row).to_contain_text("2 contain")
    row.get_by_role("button", name="Acknowledge").click()
    expect(page.locator("#incidents")).to_contain_text(f"Incident #{incident.pk} acknowledged.")
    expect(row).to_contain_text("Acknowledged")
    incident.refresh_from_db()
    assert incident.acknowledged_by is not None
    assert incident.acknowledged_by.username == "admin"
