"""The pure helpers of the access scenarios: PHI and error scanners, payload lists, parsers."""

from __future__ import annotations

import json
from typing import Any

from carevault.attacklab.scenarios import _access_common as common
from carevault.attacklab.scenarios import access_break_glass as break_glass
from carevault.attacklab.scenarios import access_csrf as csrf
from carevault.attacklab.scenarios import access_role_tampering as tampering
from carevault.attacklab.scenarios import access_sql_injection as sqli
from carevault.attacklab.target import AttackClient
from carevault.client import Response

RECORD = {
    "id": "974c457d-7993-4d22-a77c-66c00243caa9",
    "demographics": {"name": "Alice Example", "mrn": "M-1", "email": "a.b@example.org"},
    "diagnoses": [{"code": "E11.9", "description": "Type 2 diabetes & more", "doctor": "d1"}],
    "prescriptions": [{"drug": "Metformin", "dose": "500 mg", "instructions": "With meals"}],
    "lab_results": [{"test": "HbA1c", "values": "HbA1c 6.9 %", "comment": None, "files": []}],
}


def _response(status: int, location: str = "", body: bytes = b"") -> Response:
    return Response(status, {"Location": location} if location else {}, body)


def test_the_phi_of_a_record_is_every_identifying_and_clinical_value_but_short_ones() -> None:
    values = common.phi_of_record(RECORD)
    assert "Alice Example" in values
    assert "a.b@example.org" in values
    assert "Type 2 diabetes & more" in values
    assert "Metformin" in values
    assert "HbA1c 6.9 %" in values
    assert "E11.9" in values
    assert "M-1" not in values  # shorter than MIN_PHI_LENGTH: too likely by chance
    assert "d1" not in values  # the doctor's name is not the patient's PHI


def test_phi_is_found_raw_html_escaped_and_json_escaped_and_not_otherwise() -> None:
    values = ["Type 2 diabetes & more", "Alice Example", "a/b value"]
    assert common.phi_in_body(b"<td>Type 2 diabetes &amp; more</td>", values) == [values[0]]
    assert common.phi_in_body(json.dumps({"n": "Alice Example"}).encode(), values) == [values[1]]
    assert common.phi_in_body(b'{"x": "a\\/b value"}', values) == [values[2]]
    assert common.phi_in_body(b"<h1>403 Forbidden</h1>", values) == []


def test_refusals_are_denials_and_redirects_to_the_login_page_only() -> None:
    for status in (401, 403, 404, 405, 429):
        assert common.is_refusal(_response(status))
    assert common.is_refusal(_response(302, "/accounts/login/?next=/clinic/"))
    assert not common.is_refusal(_response(302, "/clinic/patients/x/"))
    assert not common.is_refusal(_response(200))
    assert not common.is_refusal(_response(500))


def test_database_error_text_is_recognised_and_a_clean_page_has_none() -> None:
    assert common.sql_errors_in(b'OperationalError: near "OR": syntax error')
    assert common.sql_errors_in(b"Traceback (most recent call last):\n  File")
    assert common.sql_errors_in(b"<p>Your search found no patient.</p>") == []


def test_ids_are_read_from_links_in_order_once_each() -> None:
    a, b = "1be18d55-d891-48f6-a2ee-35d5f5562400", "974c457d-7993-4d22-a77c-66c00243caa9"
    body = (
        f'<form action="/clinic/me/appointments/{a}/cancel/" hx-post="/clinic/me/appointments/'
        f'{a}/cancel/"><a href="/clinic/me/appointments/{b}/cancel/">'
    ).encode()
    assert common.ids_in(body, "/clinic/me/appointments/", "/cancel/") == [a, b]
    assert common.ids_in(body, "/clinic/patients/") == []


def test_markers_are_unique_and_reproducible_from_the_seed() -> None:
    import random

    class Ctx:
        rng = random.Random(1)

    first = [common.marker(Ctx(), "note") for _ in range(3)]  # type: ignore[arg-type]
    Ctx.rng = random.Random(1)
    again = [common.marker(Ctx(), "note") for _ in range(3)]  # type: ignore[arg-type]
    assert first == again
    assert len(set(first)) == 3


def test_the_quick_lab_sends_fewer_payloads_and_keeps_timing_ones() -> None:
    quick, full = sqli.payloads(True), sqli.payloads(False)
    assert len(quick) < len(full)
    assert any(timing for _, timing in quick)
    assert any("UNION SELECT" in p for p, _ in full)
    assert any("DROP TABLE" in p for p, _ in full)


def test_a_delay_counts_only_beyond_the_margin_over_the_baseline_median() -> None:
    assert not sqli.delayed(0.4, [0.05, 0.06, 0.3])
    assert not sqli.delayed(2.0, [0.05, 0.06])
    assert sqli.delayed(5.2, [0.05, 0.06])
    assert sqli.delayed(3.0, [], margin=2.5)


def test_the_registered_username_and_the_doctors_are_read_from_the_pages() -> None:
    page = "<div>Your account is ready. Your username is tamper1b: log in with it</div>"
    assert tampering.registered_username(page) == "tamper1b"
    assert tampering.registered_username("<p>Login</p>") is None
    form = (
        '<option value="" selected>Choose a doctor</option>'
        '<option value="3">Dr Gregory House</option><option value="2">Dr Meredith Grey</option>'
    )
    assert tampering.doctor_options(form) == {"3": "Dr Gregory House", "2": "Dr Meredith Grey"}


def test_break_glass_grants_are_counted_in_the_history_and_incidents_by_name() -> None:
    page = f"<td>{break_glass.HISTORY_LABEL}</td><td>Opened your record</td>".encode()
    assert break_glass.history_grants([page, page]) == 2
    activity: dict[str, Any] = {
        "incidents": [{"title": "Access denials: account doctor12"}, {"title": "x doctor1"}]
    }
    assert break_glass.named_incidents(activity, "doctor1") == 1
    assert break_glass.named_incidents(None, "doctor1") is None


class _Recorder(AttackClient):
    def __init__(self) -> None:
        super().__init__("http://127.0.0.1:1", address="198.18.0.1")
        self.sent_requests: list[tuple[str, bytes, dict[str, str]]] = []

    def csrf_token(self) -> str | None:
        return "tok"

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        self.sent_requests.append((path, body or b"", headers or {}))
        return Response(403, {}, b"")


def test_forged_posts_carry_no_token_or_a_foreign_origin_as_each_mode_says() -> None:
    client = _Recorder()
    for mode in csrf.MODES:
        csrf.forge(client, "/x/", {"body": "v"}, mode)
    csrf.forge(client, "/api/", {"body": "v"}, csrf.MODES[2], as_json=True)
    (_, plain, h0), (_, foreign, h1), (_, leaked, h2), (_, api, h3) = client.sent_requests
    assert b"csrfmiddlewaretoken" not in plain
    assert "Origin" not in h0
    assert b"csrfmiddlewaretoken" not in foreign
    assert h1["Origin"] == csrf.EVIL
    assert b"csrfmiddlewaretoken=tok" in leaked
    assert h2["Origin"] == csrf.EVIL
    assert h3["X-CSRFToken"] == "tok"
    assert json.loads(api) == {"body": "v"}


def test_the_idor_tally_counts_refusals_answers_and_the_victims_values() -> None:
    from carevault.attacklab.scenarios import access_idor as idor

    tally = idor.Tally()
    tally.check("refused", _response(404, body=b'{"error": "not found"}'), ["Alice Example"])
    tally.check("answered", _response(200, body=b"<p>Alice Example</p>"), ["Alice Example"])
    tally.check("login", _response(302, "/accounts/login/?next=/x/"), ["Alice Example"])
    assert (tally.tried, tally.refused) == (3, 2)
    assert tally.answered == ["answered -> HTTP 200"]
    assert tally.leaked == {"answered": {"Alice Example"}}


def test_an_id_slipped_into_a_page_that_takes_none_must_change_nothing() -> None:
    from carevault.attacklab.scenarios import access_idor as idor

    own = _response(200, body=b"<tr><td>a</td></tr><tr><td>b</td></tr>")
    tally = idor.Tally()
    tally.check_ignored("same rows", own, _response(200, body=own.body), ["Bob Victim"])
    assert (tally.refused, tally.answered) == (1, [])
    tally.check_ignored("other rows", own, _response(200, body=b"<tr><td>c</td></tr>"), [])
    assert tally.answered == ["other rows -> HTTP 200, other rows than without it"]
