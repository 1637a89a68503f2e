import random
import sqlite3
import uuid

import pytest

from carevault.attacklab.scenarios import rest_tamper as t

P1, P2, P3 = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex


def _envelope(n: int) -> bytes:
    return b"CV\x01\x03" + bytes([n]) * 40


@pytest.fixture
def db() -> sqlite3.Connection:
    c = sqlite3.connect(":memory:")
    c.executescript(
        """
        create table clinic_patient (id char(32) primary key, name_enc BLOB, email_enc BLOB);
        create table clinic_note (id char(32) primary key, body_enc BLOB,
            patient_id char(32) references clinic_patient (id));
        create table rx (id char(32) primary key, drug_enc BLOB, signature text,
            patient_id char(32) references clinic_patient (id));
        create table keys (id char(32) primary key, wrapped_private BLOB, user_id int);
        create table signed (id char(32) primary key, values_enc BLOB, signature text,
            patient_id char(32) references clinic_patient (id),
            signing_key_id char(32) references keys (id));
        create table plain (id char(32) primary key, data BLOB);
        """
    )
    n = iter(range(1, 200))
    for p in (P1, P2, P3):
        c.execute(
            "insert into clinic_patient values (?, ?, ?)",
            (p, _envelope(next(n)), _envelope(next(n))),
        )
        for _ in range(2):
            c.execute(
                "insert into clinic_note values (?, ?, ?)",
                (uuid.uuid4().hex, _envelope(next(n)), p),
            )
        c.execute(
            "insert into rx values (?, ?, ?, ?)",
            (uuid.uuid4().hex, _envelope(next(n)), "cvsig1.Ed25519.abcd." + "Q" * 86, p),
        )
    keys = [uuid.uuid4().hex for _ in range(3)]
    for user, key in enumerate(keys):
        c.execute("insert into keys values (?, ?, ?)", (key, _envelope(next(n)), user))
    c.execute(
        "insert into signed values (?, ?, ?, ?, ?)",
        (uuid.uuid4().hex, _envelope(next(n)), "cvsig1.Ed25519.ab." + "Q" * 86, P1, keys[0]),
    )
    c.execute("insert into plain values (?, ?)", (uuid.uuid4().hex, b"not an envelope at all"))
    return c


def test_it_finds_patient_columns_and_key_columns_from_the_schema(db) -> None:
    phi = {(c.table, c.column) for c in t.phi_columns(db)}
    assert ("clinic_patient", "name_enc") in phi
    assert ("clinic_note", "body_enc") in phi
    assert ("keys", "wrapped_private") not in phi
    assert ("plain", "data") not in phi
    assert [(c.table, c.column) for c in t.key_columns(db)] == [("keys", "wrapped_private")]


def test_every_planner_changes_exactly_the_records_it_names(db) -> None:
    used: set[str] = set()
    before = {r[0]: r[1:] for r in db.execute("select id, name_enc, email_enc from clinic_patient")}
    tampers = [planner(db, random.Random(1), used) for planner in t.PLANNERS]
    assert all(tampers)
    names = [n for tamper in tampers for n in tamper.expected]
    assert len(names) == len(set(names))  # disjoint records: each tamper is judged alone
    after = {r[0]: r[1:] for r in db.execute("select id, name_enc, email_enc from clinic_patient")}
    changed = {str(uuid.UUID(k)) for k in before if before[k] != after[k]}
    named_patients = {n.split(" ")[1] for n in names if n.startswith("clinic.patient ")}
    assert changed == named_patients


def test_the_signature_flip_leaves_its_signing_key_out_of_the_key_swap(db) -> None:
    db.execute("drop table rx")
    used: set[str] = set()
    flipped = t.flip_signature(db, random.Random(2), used)
    swapped = t.swap_signing_keys(db, random.Random(2), used)
    assert flipped is not None
    assert swapped is not None
    (key,) = db.execute("select signing_key_id from signed").fetchone()
    assert f"keys {uuid.UUID(key)} wrapped_private" not in swapped.expected


def test_a_swap_between_patients_takes_rows_of_two_patients(db) -> None:
    tamper = t.swap_patients(db, random.Random(3), set())
    assert tamper is not None
    assert len(tamper.expected) == 2


def test_judge_splits_detected_from_missed() -> None:
    tamper = t.Tamper("x", ["a 1 f", "a 2 f"])
    assert t.judge([tamper], ["a 1 f", "b 9 g"]) == (["a 1 f"], ["a 2 f"])


def test_record_name_reads_like_the_walks_names() -> None:
    row = uuid.uuid4()
    assert t.record_name("clinic_patient", row.hex, "name_enc") == f"clinic.patient {row} name"
