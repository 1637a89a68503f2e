"""The security officer's dashboard: audit log, chain status, break-glass review, key status.
The officer sees identifiers, never clinical content."""

from __future__ import annotations

import pytest
from django.urls import reverse

from carevault.web import demo
from carevault.web.audit.models import AuditEntry
from carevault.web.clinic import actions as clinic
from carevault.web.clinic.models import BreakGlassGrant
from carevault.web.officer.views import AUDIT_PAGE_SIZE
from carevault.web.vault.models import PatientKey

pytestmark = pytest.mark.django_db

DASHBOARD = reverse("officer:dashboard")
AUDIT_TABLE = reverse("officer:audit_table")
EMERGENCY_REASON = "Brought in unconscious to the emergency room; own doctor unreachable."


@pytest.fixture
def grant(users, patients):
    return clinic.do_break_glass(users["doctor2"], patients["patient1"], reason=EMERGENCY_REASON)


def latest(action):
    return AuditEntry.objects.filter(action=action).order_by("-seq").first()


def test_the_dashboard_loads_for_the_officer_and_shows_audit_entries(client_for):
    response = client_for("admin").get(DASHBOARD)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Audit chain" in html
    assert "intact" in html
    assert "patient.create" in html
    assert "prescription.create" in html
    assert response.context["page"].paginator.count == AuditEntry.objects.count()


def test_the_dashboard_shows_no_decrypted_clinical_text(client_for, grant):
    client = client_for("admin")
    pages = [
        client.get(DASHBOARD).content.decode(),
        client.get(AUDIT_TABLE).content.decode(),
        client.get(reverse("officer:users")).content.decode(),
    ]
    for html in pages:
        for text in demo.demo_phi():
            assert text not in html, text


def test_no_officer_page_decrypts_clinical_records(client_for, users, grant):
    client = client_for("admin")
    for url in [
        DASHBOARD,
        AUDIT_TABLE,
        reverse("officer:users"),
        reverse("officer:user_edit", args=[users["patient1"].pk]),
    ]:
        assert client.get(url).status_code == 200
    reads = AuditEntry.objects.filter(actor="admin", action__startswith="phi.")
    assert not reads.exists()


def test_a_tampered_grant_reason_shows_as_tampered(client_for, grant):
    other = clinic.do_break_glass(
        grant.doctor, grant.patient, reason="A second emergency, written to be swapped in."
    )
    BreakGlassGrant.objects.filter(pk=grant.pk).update(reason_enc=other.reason_enc)
    html = client_for("admin").get(DASHBOARD).content.decode()
    assert "does not decrypt (tampered)" in html


@pytest.mark.parametrize("username", ["doctor1", "patient1", "labtech1"])
@pytest.mark.parametrize(
    "url",
    [
        DASHBOARD,
        AUDIT_TABLE,
        reverse("officer:users"),
        reverse("officer:user_create"),
        reverse("officer:user_edit", args=[1]),
    ],
)
def test_other_roles_get_403_and_an_audit_entry(client_for, username, url):
    before = AuditEntry.objects.filter(action="access.denied").count()
    response = client_for(username).get(url)
    assert response.status_code == 403
    entry = latest("access.denied")
    assert AuditEntry.objects.filter(action="access.denied").count() == before + 1
    assert entry.actor == username
    assert entry.outcome == "denied"
    assert entry.details["path"] == url


def test_anonymous_visitors_are_sent_to_log_in(client_for):
    response = client_for(None).get(DASHBOARD)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:login"))


def test_the_audit_log_is_newest_first_and_paginated_by_50(client_for):
    client = client_for("admin")
    first = client.get(DASHBOARD).context["page"]
    seqs = [entry.seq for entry in first.object_list]
    assert seqs == sorted(seqs, reverse=True)
    assert seqs[0] == AuditEntry.objects.order_by("-seq").first().seq
    total = AuditEntry.objects.count()
    assert len(seqs) == min(total, AUDIT_PAGE_SIZE)
    if total > AUDIT_PAGE_SIZE:
        second = client.get(DASHBOARD, {"page": 2}).context["page"]
        assert second.object_list[0].seq == seqs[-1] - 1


def test_the_audit_log_filters_by_action_prefix_outcome_and_actor(client_for, users):
    client_for("doctor1").get(DASHBOARD)  # a denial by doctor1
    client = client_for("admin")
    by_prefix = client.get(AUDIT_TABLE, {"action": "lab."}).context["page"].object_list
    assert by_prefix
    assert all(entry.action.startswith("lab.") for entry in by_prefix)
    denied = client.get(AUDIT_TABLE, {"outcome": "denied"}).context["page"].object_list
    assert denied
    assert all(entry.outcome == "denied" for entry in denied)
    by_actor = client.get(AUDIT_TABLE, {"actor": "DOCTOR1"}).context["page"].object_list
    assert by_actor
    assert all(entry.actor == "doctor1" for entry in by_actor)
    combined = client.get(
        AUDIT_TABLE, {"action": "access.", "outcome": "denied", "actor": "doctor1"}
    ).context["page"]
    assert combined.paginator.count == 1


def test_the_audit_table_refreshes_itself_every_10_seconds_with_its_filters(client_for):
    html = client_for("admin").get(AUDIT_TABLE, {"outcome": "ok"}).content.decode()
    assert 'hx-trigger="every 10s"' in html
    assert f'hx-get="{AUDIT_TABLE}?outcome=ok"' in html
    assert "<html" not in html  # a fragment, not a page


def test_a_tampered_audit_entry_shows_as_a_broken_chain(client_for):
    AuditEntry.objects.filter(seq=2).update(action="auth.logout")  # bypasses append-only save()
    response = client_for("admin").get(DASHBOARD)
    assert not response.context["chain"].ok
    assert "entry 2 was altered" in response.content.decode()


def test_the_dashboard_counts_recent_denials_and_login_failures(client_for, client, packet_login):
    before = client_for("admin").get(DASHBOARD).context["counts"]
    packet_login(client, "doctor1", "wrong-password")
    client_for("labtech1").get(DASHBOARD)
    after = client_for("admin").get(DASHBOARD).context["counts"]
    assert after["login_failures"] == before["login_failures"] + 1
    assert after["denials"] == before["denials"] + 1


def test_the_dashboard_shows_key_status(client_for):
    response = client_for("admin").get(DASHBOARD)
    keys = response.context["keys"]
    assert keys["patient_keys"] == PatientKey.objects.count() == 3
    assert keys["provider"].startswith("file ")
    assert keys["provider"] in response.content.decode()


def test_active_grants_show_the_doctor_the_patient_id_and_the_reason_not_the_name(
    client_for, grant, patients
):
    html = client_for("admin").get(DASHBOARD).content.decode()
    assert "doctor2" in html
    assert str(patients["patient1"].pk) in html
    assert EMERGENCY_REASON in html
    assert "Alice Wonderland-Smith" not in html
    assert f'hx-post="{reverse("officer:revoke_break_glass", args=[grant.pk])}"' in html


def test_reading_the_grant_reasons_is_audited(client_for, grant):
    client_for("admin").get(DASHBOARD)
    entry = latest("breakglass.review")
    assert entry.actor == "admin"
    assert entry.target_id == str(grant.pk)
    assert entry.patient_id == str(grant.patient_id)
    assert EMERGENCY_REASON not in str(entry.details)


def test_expired_and_revoked_grants_are_not_listed(client_for, grant):
    BreakGlassGrant.objects.filter(pk=grant.pk).update(revoked=True)
    response = client_for("admin").get(DASHBOARD)
    assert response.context["grants"] == []
    assert EMERGENCY_REASON not in response.content.decode()


def test_the_officer_revokes_break_glass_with_htmx(client_for, grant, patients):
    doctor = client_for("doctor2")
    record_url = reverse("api:patient_record", args=[patients["patient1"].pk])
    assert doctor.get(record_url).status_code == 200
    response = client_for("admin").post(
        reverse("officer:revoke_break_glass", args=[grant.pk]), HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" not in html
    assert "revoked" in html
    assert EMERGENCY_REASON not in html  # no longer active, no longer listed
    grant.refresh_from_db()
    assert grant.revoked
    entry = latest("breakglass.revoke")
    assert entry.actor == "admin"
    assert entry.target_id == str(grant.pk)
    assert doctor.get(record_url).status_code == 404


def test_revoking_without_htmx_redirects_to_the_dashboard(client_for, grant):
    response = client_for("admin").post(reverse("officer:revoke_break_glass", args=[grant.pk]))
    assert response.status_code == 302
    assert response["Location"] == DASHBOARD
    grant.refresh_from_db()
    assert grant.revoked


def test_revoking_an_ended_grant_changes_nothing(client_for, grant):
    client = client_for("admin")
    url = reverse("officer:revoke_break_glass", args=[grant.pk])
    client.post(url, HTTP_HX_REQUEST="true")
    revocations = AuditEntry.objects.filter(action="breakglass.revoke").count()
    response = client.post(url, HTTP_HX_REQUEST="true")
    assert "already ended" in response.content.decode()
    assert AuditEntry.objects.filter(action="breakglass.revoke").count() == revocations


def test_a_doctor_cannot_revoke_break_glass(client_for, grant):
    response = client_for("doctor1").post(reverse("officer:revoke_break_glass", args=[grant.pk]))
    assert response.status_code == 403
    grant.refresh_from_db()
    assert not grant.revoked
    assert latest("access.denied").actor == "doctor1"


def test_revoke_needs_a_post(client_for, grant):
    response = client_for("admin").get(reverse("officer:revoke_break_glass", args=[grant.pk]))
    assert response.status_code == 405


def test_revoking_an_unknown_grant_is_a_404(client_for):
    response = client_for("admin").post(
        reverse("officer:revoke_break_glass", args=["00000000-0000-0000-0000-000000000000"])
    )
    assert response.status_code == 404
