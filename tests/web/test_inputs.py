"""Malformed input is a 400 that says what was wrong (413 when too large), never a server error:
JSON is capped in size and depth before it is parsed, numbers are checked, and text that is not
valid Unicode is refused wherever it comes in (query string, form field, JSON string)."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from carevault.web.clinic.models import ClinicalNote
from carevault.web.inputs import MAX_DEPTH, InputRejected, parse_json

# -- parse_json -----------------------------------------------------------------------------------


def rejected(body: bytes | str, **options: int) -> InputRejected:
    with pytest.raises(InputRejected) as caught:
        parse_json(body, **options)
    return caught.value


def test_ordinary_json_parses():
    body = json.dumps({"features": [1, -2.5, 3e2, 123456789012345678], "note": "ü 🔑 [{"})
    assert parse_json(body.encode()) == json.loads(body)


def test_json_nested_a_hundred_thousand_deep_is_refused_before_parsing():
    error = rejected(b"[" * 100_000 + b"]" * 100_000)
    assert (error.code, error.status) == ("too_deep", 400)
    assert f"more than {MAX_DEPTH} levels" in error.message


def test_nesting_up_to_the_limit_is_fine_and_brackets_in_strings_do_not_count():
    deep = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert parse_json(deep) is not None
    assert rejected("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)).code == "too_deep"
    assert parse_json(json.dumps({"a": "[[[[" * 100})) == {"a": "[[[[" * 100}


def test_an_unterminated_string_full_of_brackets_is_invalid_json_not_slow():
    assert rejected('"' + "\\" + '"[' * 200_000).code in ("invalid_json", "too_deep")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[" + "9" * 401 + "]", "more than 18 digits"),
        ("-" + "1" * 19, "more than 18 digits"),
        ("1e400", "not a finite number"),
        ("-1e400", "not a finite number"),
        ("0." + "1" * 30, "more than 18 digits"),
        ("NaN", "NaN is not a JSON number"),
        ("[Infinity]", "Infinity is not a JSON number"),
    ],
)
def test_numbers_are_checked_as_they_are_parsed(body, message):
    error = rejected(body)
    assert error.code == "invalid_number"
    assert message in error.message


def test_eighteen_digits_and_every_float_as_json_writes_it_are_fine():
    floats = [0.00012345678901234567, 1234.5678901234567, -2.2250738585072014e-308, 1.5e-300]
    body = json.dumps([123456789012345678, 2e10, *floats])
    assert parse_json(body) == [123456789012345678, 2e10, *floats]


def test_a_number_padded_with_zeros_is_refused():
    assert rejected("0." + "0" * 100 + "1").code == "invalid_number"


@pytest.mark.parametrize("escape", ["\\udfff", "\\ud800", "\\u0000"])
def test_a_lone_surrogate_or_nul_in_a_string_or_key_is_refused(escape):
    assert rejected(f'{{"body": "a{escape}b"}}').code == "invalid_text"
    assert rejected(f'{{"a{escape}": 1}}').code == "invalid_text"


def test_a_surrogate_pair_is_one_character_and_fine():
    assert parse_json('"\\ud83d\\udd11"') == "🔑"


def test_a_body_over_the_limit_is_too_large():
    error = rejected(b" " * 2048, max_bytes=1024)
    assert (error.code, error.status) == ("too_large", 413)


@pytest.mark.parametrize("body", [b"\xff\xfe", b"{", b"", b'{"a": 1,}', b"\xed\xbf\xbf"])
def test_invalid_json_or_utf8_says_so(body):
    error = rejected(body)
    assert error.code == "invalid_json"
    assert error.message.startswith("the body is not valid")


# -- the endpoints --------------------------------------------------------------------------------


def post_json(client, url, body):
    return client.post(url, body, content_type="application/json")


def notes_url(patient):
    return reverse("api:patient_notes", args=[patient.pk])


def diagnoses_url(patient):
    return reverse("api:patient_diagnoses", args=[patient.pk])


@pytest.mark.django_db
def test_the_issues_three_inputs_are_400s_that_say_what_was_wrong(client_for, patients):
    doctor = client_for("doctor1")
    patient = patients["patient1"]
    deep = post_json(doctor, notes_url(patient), b"[" * 100_000 + b"]" * 100_000)
    assert deep.status_code == 400
    assert deep.json()["error"]["code"] == "too_deep"
    big = post_json(doctor, diagnoses_url(patient), '{"features": [' + "9" * 401 + "]}")
    assert big.status_code == 400
    assert "more than 18 digits" in big.json()["error"]["message"]
    lone = post_json(doctor, notes_url(patient), '{"body": "a \\udfff note"}')
    assert lone.status_code == 400
    assert "lone surrogate" in lone.json()["error"]["message"]
    assert not ClinicalNote.objects.filter(patient=patient, author__username="x").exists()


@pytest.mark.django_db
def test_a_json_body_over_the_limit_is_a_413(client_for, patients, settings):
    settings.JSON_MAX_BODY_BYTES = 2048
    body = json.dumps({"body": "x" * 4096})
    response = post_json(client_for("doctor1"), notes_url(patients["patient1"]), body)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query",
    ["q=%ff", "role=%ed%bf%bf", "page=1%00", "%00=1", "next=a%c3"],
)
def test_a_query_string_that_is_not_valid_text_is_a_400_that_says_so(client_for, query):
    response = client_for("admin").get(reverse("officer:users"), QUERY_STRING=query)
    assert response.status_code == 400
    text = response.content.decode()
    assert "query string" in text
    assert "UTF-8" in text or "NUL" in text


@pytest.mark.django_db
def test_api_requests_get_the_refusal_in_json(client_for):
    response = client_for("doctor1").get(reverse("api:patients"), QUERY_STRING="page=%ff")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_text"


@pytest.mark.django_db
@pytest.mark.parametrize("body", [b"identifier=%ff%fe", b"identifier=a%00b"])
def test_a_form_body_that_is_not_valid_text_is_a_400(client, body):
    response = client.post(
        reverse("account_security:password_reset"),
        body,
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 400
    assert "form" in response.content.decode()


@pytest.mark.django_db
def test_ordinary_unicode_passes(client_for):
    response = client_for("admin").get(
        reverse("officer:users"), QUERY_STRING="role=%C3%BC%F0%9F%94%91"
    )
    assert response.status_code == 200
