"""Fuzzing every URL of the application (Hypothesis): no input gives a server error.

Every named URL pattern is enumerated from the URL configuration (a new view is fuzzed without
being listed here), its arguments filled with real objects of the demo clinic, and requested as
each role (anonymous, patient, doctor, lab technician, officer) with

* query strings of arbitrary text and bytes (invalid UTF-8, lone surrogates, NUL, huge numbers),
* url-encoded form bodies with the field names of every form in the application,
* JSON and other bodies: arbitrary JSON values, feature vectors of huge numbers, deep nesting,
  lone-surrogate escapes, bytes that are not JSON at all.

Every answer must be below 500 (the test client also re-raises any exception a view lets out).
The runs are derandomized, so the same examples run every time (about 1,100 requests, 25 to
45 s on a 2-core machine).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote_from_bytes

import pytest
from django import forms
from django.core.cache import caches
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carevault.modelguard import dataset, diagnosis_training
from carevault.modelstore.datadir import model_store
from carevault.web.clinic.models import Appointment, BreakGlassGrant
from carevault.web.diagnosis import serving
from carevault.web.diagnosis.models import ClientCutOff
from carevault.web.jobs.models import JobRun
from carevault.web.labs.models import LabFile, LabRequest
from carevault.web.login import recovery
from carevault.web.securitycore.models import Incident, ResponseRecord, ResponseStatus
from carevault.web.vault.context import SYSTEM_WRITE

pytestmark = pytest.mark.django_db

ROLES = (None, "patient1", "doctor1", "labtech1", "admin")

FUZZ = settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


# -- what to request ------------------------------------------------------------------------------


def named_urls() -> list[tuple[str, URLPattern]]:
    found: list[tuple[str, URLPattern]] = []

    def walk(patterns: list[Any], namespace: str) -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, pattern.namespace or namespace)
            elif isinstance(pattern, URLPattern) and pattern.name:
                name = f"{namespace}:{pattern.name}" if namespace else pattern.name
                found.append((name, pattern))

    walk(get_resolver().url_patterns, "")
    return found


def _form_classes(base: type[forms.BaseForm]) -> Iterator[type[forms.BaseForm]]:
    for sub in base.__subclasses__():
        yield sub
        yield from _form_classes(sub)


def field_names() -> list[str]:
    """The field names of every form of the application, and a few every view reads."""
    import carevault.web.urls  # noqa: F401 - imports every view module, so every form

    names = {"page", "next", "role", "q", "op", "sealed_packet", "f0", "f29", "path", "address"}
    names |= {"before", "section"}  # the record's "show more" cursor and the API's list
    for form in _form_classes(forms.Form):
        if form.__module__.startswith("carevault."):
            names.update(form.base_fields)
    return sorted(names)


FIELDS = field_names()
NAMES = dataset.feature_names()

NASTY = [
    "",
    "\udfff",
    "\ud800x",
    "a\x00b",
    "9" * 401,
    "1e400",
    "-1",
    "0",
    "NaN",
    "2026-02-30",
    "../../etc/passwd",
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    "x" * 5000,
    "%ff",
    "🔑",
    "1" * 19,
    "null",
    "[]",
    '{"cid": "AAAAAAAAAAAAAAAAAAAAAA", "epk": "", "iv": "", "ct": ""}',
    "doctor",
    "logistic",
]

GOOD = ["1990-05-17", "12.5", "1", "approve", "decline", "doctor", "labtech", "logistic", "on"]

# Mostly text a person could type (so the views' own logic runs), sometimes hostile input.
typed = st.one_of(st.text(st.characters(codec="utf-8"), max_size=20), st.sampled_from(GOOD))
hostile = st.one_of(
    st.sampled_from(NASTY), st.text(st.characters(exclude_categories=()), max_size=30)
)
texts = st.integers(0, 9).flatmap(lambda i: typed if i < 6 else hostile)


def _encode(value: str | bytes) -> str:
    raw = value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")
    return quote_from_bytes(raw, safe="")


pairs = st.lists(
    st.tuples(
        st.integers(0, 9).flatmap(lambda i: st.sampled_from(FIELDS) if i < 8 else texts),
        st.integers(0, 9).flatmap(lambda i: texts if i < 9 else st.binary(max_size=12)),
    ),
    max_size=8,
)


def urlencoded(items: list[tuple[str, str | bytes]]) -> str:
    return "&".join(f"{_encode(k)}={_encode(v)}" for k, v in items)


numbers = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([10**400, -(10**400), 1e308, 0]),
)
leaves = st.one_of(st.none(), st.booleans(), numbers, texts)
json_values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.one_of(st.sampled_from(FIELDS), texts), inner, max_size=4)
    ),
    max_leaves=12,
)
feature_bodies = st.fixed_dictionaries(
    {
        "features": st.one_of(
            st.lists(numbers, min_size=30, max_size=30),
            st.lists(numbers, max_size=40),
            st.dictionaries(st.sampled_from(NAMES), numbers, max_size=30),
        ),
        "model": st.one_of(st.sampled_from(["logistic", "forest"]), texts, numbers),
    }
)
note_bodies = st.fixed_dictionaries({"body": st.one_of(texts, json_values)})


def _dumps(value: Any) -> bytes:
    # ensure_ascii: lone surrogates travel as \\udfff escapes, as a hostile client sends them.
    return json.dumps(value, allow_nan=True).encode()


raw_bodies = st.one_of(
    st.integers(min_value=1, max_value=100_000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(min_value=1, max_value=100_000).map(lambda n: b'{"a":' * n),
    st.sampled_from(
        [
            b'{"features": [' + b"9" * 401 + b"]}",
            b'{"body": "a \\udfff note"}',
            b'{"body": "\\u0000"}',
            b"\xff\xfe\xfd",
            b"",
            b"[1e400]",
            b'{"body": "x", "body": 1}',
        ]
    ),
    st.binary(max_size=200),
)
bodies = st.one_of(
    json_values.map(_dumps),
    feature_bodies.map(_dumps),
    note_bodies.map(_dumps),
    raw_bodies,
)


# -- the clinic they are asked of -----------------------------------------------------------------


@pytest.fixture(scope="module")
def diagnosis_models(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("fuzz-diagnosis-models")
    reports = diagnosis_training.train(model_store(data_dir), seed=dataset.DEFAULT_SEED)
    assert all(r.sealed for r in reports)
    return data_dir


@pytest.fixture
def served(settings, diagnosis_models):
    """The diagnosis models served, so the diagnosis endpoints answer instead of 503."""
    settings.DATA_DIR = diagnosis_models
    serving.reset()
    yield
    serving.reset()


@pytest.fixture
def urls(users, patients, served) -> list[tuple[str, str]]:
    """(URL name, URL) for every named URL, its arguments patient1's objects."""
    patient = patients["patient1"]
    grant = BreakGlassGrant(
        doctor=users["doctor2"], patient=patient, expires_at=timezone.now() + dt.timedelta(hours=1)
    )
    grant.seal(SYSTEM_WRITE, reason="a grant for the fuzz test")
    grant.save()
    now = timezone.now()
    incident = Incident.objects.create(opened_at=now, updated_at=now, title="fuzz", level=1)
    response = ResponseRecord.objects.create(
        incident=incident,
        at=now,
        action="throttle_address",
        level=2,
        target="192.0.2.98",
        explanation="for the fuzz test",
        status=ResponseStatus.IN_FORCE,
        reversible=True,
    )
    link = recovery.reset_link(users["patient1"], site_url="http://testserver")
    uidb64, token = link.rstrip("/").split("/")[-2:]
    lab_file = LabFile.objects.filter(patient=patient).first()
    arguments: dict[str, Any] = {
        "patient_id": patient.pk,
        "appointment_id": Appointment.objects.filter(patient=patient).first().pk,
        "request_id": LabRequest.objects.filter(patient=patient).first().pk,
        "file_id": lab_file.pk if lab_file else uuid.uuid4(),
        "grant_id": grant.pk,
        "incident_id": incident.pk,
        "response_id": response.pk,
        "cut_off_id": ClientCutOff.objects.create(
            client="api:0", user=users["doctor1"], reason="for the fuzz test"
        ).pk,
        "user_id": users["doctor2"].pk,
        "run_id": JobRun.objects.create(kind="audit.seal", state="failed").pk,
        "path": "no/such/endpoint",
        "section": "notes",
        "uidb64": uidb64,
        "token": token,
    }
    found = []
    for name, pattern in named_urls():
        kwargs = {key: arguments[key] for key in pattern.pattern.converters}
        if name == "api:not_found":
            kwargs = {"path": arguments["path"]}
        found.append((name, reverse(name, kwargs=kwargs)))
    return found


@pytest.fixture
def ask(client_for) -> Callable[..., Any]:
    """Send one request as ``role`` and check that the answer is not a server error."""

    def send(role: str | None, method: str, url: str, **options: Any) -> Any:
        # Earlier examples' throttles and blocks must not shield the views from this one.
        caches["default"].clear()
        client: Client = client_for(role)
        response = client.generic(method, url, **options)
        assert response.status_code < 500, (
            f"{role or 'anonymous'} {method} {url} {options!r:.300} -> {response.status_code}"
        )
        return response

    return send


def takes_json(url_name: str) -> bool:
    return url_name.startswith("api:") or url_name == "accounts:login_packet"


def test_every_named_url_is_fuzzed(urls):
    assert len(urls) == len(named_urls()) > 50


@FUZZ
@given(data=st.data())
def test_no_query_string_gives_a_server_error(urls, ask, data):
    _, url = data.draw(st.sampled_from(urls), label="url")
    role = data.draw(st.sampled_from(ROLES), label="role")
    query = urlencoded(data.draw(pairs, label="query"))
    ask(role, "GET", url, QUERY_STRING=query)


@FUZZ
@given(data=st.data())
def test_no_form_post_gives_a_server_error(urls, ask, data):
    _, url = data.draw(st.sampled_from(urls), label="url")
    role = data.draw(st.sampled_from(ROLES), label="role")
    body = urlencoded(data.draw(pairs, label="form")).encode("ascii")
    ask(role, "POST", url, data=body, content_type="application/x-www-form-urlencoded")


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


utf8_text = st.one_of(
    st.text(st.characters(codec="utf-8"), max_size=30),
    st.sampled_from([t for t in NASTY + GOOD if _utf8(t)]),
)
uploads = st.lists(
    st.tuples(
        st.text(st.characters(codec="utf-8"), min_size=1, max_size=20),
        st.binary(max_size=64),
    ),
    max_size=2,
)


@FUZZ
@given(data=st.data())
def test_no_multipart_post_gives_a_server_error(urls, ask, data):
    """As a browser posts a form with files (the lab upload); values are UTF-8 text here."""
    _, url = data.draw(st.sampled_from(urls), label="url")
    role = data.draw(st.sampled_from(ROLES), label="role")
    fields = data.draw(st.dictionaries(st.sampled_from(FIELDS), utf8_text, max_size=8))
    files = [
        SimpleUploadedFile(name, content, content_type="application/octet-stream")
        for name, content in data.draw(uploads, label="files")
    ]
    body: dict[str, Any] = dict(fields)
    if files:
        body["files"] = files
    ask(role, "POST", url, data=encode_multipart(BOUNDARY, body), content_type=MULTIPART_CONTENT)


@FUZZ
@given(data=st.data())
def test_no_json_body_gives_a_server_error(urls, ask, data):
    json_urls = [
        u for name, u in urls if name.startswith("api:") or name == "accounts:login_packet"
    ]
    url = data.draw(st.one_of(st.sampled_from(json_urls), st.sampled_from([u for _, u in urls])))
    role = data.draw(st.sampled_from(ROLES), label="role")
    body = data.draw(bodies, label="body")
    content_type = data.draw(
        st.sampled_from(["application/json", "application/octet-stream", "text/plain"])
    )
    ask(role, "POST", url, data=body, content_type=content_type)


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"features": [' + b"9" * 401 + b"]}",
        b'{"body": "a \\udfff note", "features": ["\\udfff"]}',
    ],
)
def test_the_issues_inputs_are_refused_by_every_json_endpoint_as_every_role(urls, ask, body):
    for name, url in urls:
        if takes_json(name):
            for role in ROLES:
                ask(role, "POST", url, data=body, content_type="application/json")
