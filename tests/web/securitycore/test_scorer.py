"""Background scoring: the kinds that gate no attacker are stored pending after commit, queued,
and scored off the request; claims keep several scorers from scoring one row twice."""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.urls import reverse
from security_helpers import ATTACKER, WRONG, FixedScorer, attempt, scoring_with, use_fast_hashes

from carevault.web import demo
from carevault.web.login import factor_state
from carevault.web.securitycore import scorer, scoring
from carevault.web.securitycore.models import ResponseRecord, SecurityEvent
from carevault.web.securitycore.runtime import runtime
from carevault.web.vault import service

pytestmark = pytest.mark.django_db


@pytest.fixture
def background_scoring(settings: Any) -> None:
    """Background mode with no thread: drain() scores in the test's thread, deterministically."""
    settings.SECURITY_SCORING = "background"
    settings.SECURITY_TELEMETRY_SECONDS = 0
    scorer.reset()
    scorer.use_thread(False)


def detail(patient: Any) -> str:
    return reverse("clinic:patient_detail", args=[patient.pk])


def pending() -> list[SecurityEvent]:
    return list(SecurityEvent.objects.filter(risk__isnull=True).order_by("pk"))


def test_a_phi_read_is_stored_pending_and_scored_by_the_drain(
    background_scoring, client_for, patients, requests_commit
):
    doctor = client_for("doctor1")
    assert doctor.get(detail(patients["patient1"])).status_code == 200
    read = SecurityEvent.objects.get(kind="phi_read", actor="doctor1")
    assert read.risk is None
    assert scorer.health()["queued"] == 1
    assert scorer.drain() == 1
    read.refresh_from_db()
    assert read.risk is not None
    assert (read.claimed_by, read.claimed_at) == ("", None)
    assert scorer.health()["queued"] == 0


def test_a_risky_read_scored_in_the_background_steps_up_the_session_it_came_from(
    background_scoring, client_for, patients, requests_commit
):
    doctor = client_for("doctor1")
    with scoring_with(FixedScorer(0.6, kinds=("phi_read",))):
        assert doctor.get(detail(patients["patient1"])).status_code == 200
        assert factor_state.STEP_UP_KEY not in doctor.session
        scorer.drain()
    assert factor_state.STEP_UP_KEY in doctor.session
    assert ResponseRecord.objects.filter(action="step_up").exists()


def test_a_risky_read_found_by_the_sweep_answers_the_account_instead(
    background_scoring, client_for, patients, requests_commit, users
):
    doctor = client_for("doctor1")
    epoch = users["doctor1"].session_epoch
    with scoring_with(FixedScorer(0.75, kinds=("phi_read",))):
        assert doctor.get(detail(patients["patient1"])).status_code == 200
        scorer.reset()  # the queue (and the session it knew) is gone: only the row remains
        assert scoring.score_pending() == 1
    users["doctor1"].refresh_from_db()
    assert users["doctor1"].session_epoch > epoch
    assert doctor.get(detail(patients["patient1"])).status_code == 302


def test_a_login_failure_is_still_scored_before_the_response(
    background_scoring, settings, users, cast_password, clock
):
    use_fast_hashes(settings, cast_password)
    attempt(clock, "doctor1", WRONG, ATTACKER)
    failure = SecurityEvent.objects.get(kind="login_failure")
    assert failure.risk is not None
    assert scorer.health()["queued"] == 0


def test_a_full_queue_does_not_block_and_loses_nothing(
    background_scoring, settings, client_for, patients, requests_commit
):
    settings.SECURITY_SCORING_QUEUE = 1
    scorer.reset()
    doctor = client_for("doctor1")
    for name in ("patient1", "patient2", "patient1"):
        assert doctor.get(detail(patients[name])).status_code == 200
    health = scorer.health()
    assert (health["queued"], health["overflowed"], health["backlog"]) == (1, 2, 3)
    assert scorer.drain() == 3
    assert pending() == []


def test_the_backlog_over_its_high_water_mark_is_reported(
    background_scoring, settings, client_for, patients, requests_commit, monkeypatch
):
    settings.SECURITY_SCORING_HIGH_WATER = 1
    doctor = client_for("doctor1")
    doctor.get(detail(patients["patient1"]))
    assert not scorer.health()["over_high_water"]
    doctor.get(detail(patients["patient2"]))
    assert scorer.health()["over_high_water"]
    # The dashboard scores what is pending before it shows it: here the scorer cannot keep up.
    monkeypatch.setattr("carevault.web.officer.dashboard.score_pending", lambda: 0)
    officer = client_for("admin")
    page = officer.get(reverse("officer:dashboard"))
    assert page.status_code == 200
    assert b"scoring-backlog" in page.content


def test_a_row_claimed_by_one_scorer_is_not_claimed_or_scored_by_another(
    background_scoring, client_for, patients, requests_commit
):
    client_for("doctor1").get(detail(patients["patient1"]))
    mine = scoring.claim("scorer-a", limit=10)
    assert [row.kind for row in mine] == ["phi_read"]
    assert scoring.claim("scorer-b", limit=10) == []
    assert scoring.score_pending() == 0
    with scoring._at_work():
        assert not scoring.score_claimed(runtime(), mine[0], "scorer-b")
        assert scoring.score_claimed(runtime(), mine[0], "scorer-a")
    assert pending() == []


def test_a_dead_scorers_claim_is_taken_over_once_its_lease_runs_out(
    background_scoring, client_for, patients, requests_commit
):
    client_for("doctor1").get(detail(patients["patient1"]))
    scoring.claim("dead-process", limit=10)
    assert scoring.score_pending() == 0
    lease = dt.timedelta(seconds=scoring.lease_seconds() + 1)
    SecurityEvent.objects.update(claimed_at=dt.datetime.now(tz=dt.UTC) - lease)
    assert scoring.score_pending() == 1
    assert pending() == []


def test_a_forked_child_starts_with_a_queue_of_its_own(background_scoring, monkeypatch):
    parent = scorer._current()
    monkeypatch.setattr(scorer.os, "getpid", lambda: parent.pid + 1)
    assert scorer._current() is not parent


def test_an_unknown_scoring_mode_stops_start_up(settings):
    from django.core.exceptions import ImproperlyConfigured

    settings.SECURITY_SCORING = "backgroud"
    with pytest.raises(ImproperlyConfigured, match="backgroud"):
        scorer.check_mode()


# -- real threads on a database they share ---------------------------------------------------------


@pytest.fixture(scope="module")
def _restore_cast(django_db_blocker: Any, cast_password: str) -> Iterator[None]:
    """Put the demo cast back once this module's committing tests (and their flushes) are done."""
    yield
    with django_db_blocker.unblock():
        if not demo.is_seeded():
            service.reset_caches()
            demo.seed(cast_password)


@pytest.fixture
def committed(_restore_cast: None, transactional_db: None, cast_password: str) -> None:
    """Committed rows another thread can read: a file or server database, with the cast."""
    if connection.vendor == "sqlite" and connection.is_in_memory_db():
        pytest.skip("threads need a file or server database (run on PostgreSQL)")
    if not demo.is_seeded():
        service.reset_caches()
        demo.seed(cast_password)


def test_the_scorer_thread_scores_what_requests_queued(
    committed, background_scoring, client_for, patients
):
    scorer.use_thread(True)
    doctor = client_for("doctor1")
    for name in ("patient1", "patient2"):
        assert doctor.get(detail(patients[name])).status_code == 200
    assert scorer.health()["thread_alive"]
    scorer.drain()
    assert pending() == []
    assert SecurityEvent.objects.filter(kind="phi_read").count() == 2


def test_scorers_in_several_threads_never_score_one_row_twice(
    committed, background_scoring, client_for, patients, monkeypatch
):
    doctor = client_for("doctor1")
    names = ("patient1", "patient2", "patient1")
    for _ in range(4):
        for name in names:
            doctor.get(detail(patients[name]))
    rows = SecurityEvent.objects.filter(risk__isnull=True).count()
    assert rows == 12
    responded: Counter[int] = Counter()
    lock = threading.Lock()
    real_respond = scoring.respond

    def counting(row: SecurityEvent, *args: Any) -> None:
        with lock:
            responded[row.pk] += 1
        real_respond(row, *args)

    monkeypatch.setattr(scoring, "respond", counting)
    start = threading.Barrier(4)

    def work() -> None:
        try:
            start.wait()
            while scoring.score_pending(limit=2):
                pass
        finally:
            connection.close()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    scoring.score_pending()  # what a failed claim (a busy database) released
    assert pending() == []
    assert len(responded) == rows
    assert set(responded.values()) == {1}


def test_security_status_reports_the_scoring_mode_and_backlog(
    background_scoring, settings, client_for, patients, requests_commit
):
    from carevault.web.securitycore import operator

    settings.SECURITY_SCORING_HIGH_WATER = 0
    client_for("doctor1").get(detail(patients["patient1"]))
    facts = operator.status()["scoring"]
    assert (facts["mode"], facts["backlog"], facts["over_high_water"]) == ("background", 1, True)
    assert "scoring: background; 1 events pending (over the high-water mark 0)" in (
        operator.render_status(operator.status())
    )


def test_a_queued_row_that_another_scorer_claimed_is_left_to_it(
    background_scoring, client_for, patients, requests_commit
):
    client_for("doctor1").get(detail(patients["patient1"]))
    assert scorer.health()["queued"] == 1
    scoring.claim("another-process", limit=10)
    assert scorer.drain() == 0
    assert [row.claimed_by for row in pending()] == ["another-process"]


def test_in_worker_mode_the_serving_process_only_stores_and_a_drain_scores(
    background_scoring, settings, client_for, patients, requests_commit
):
    settings.SECURITY_SCORING = "worker"
    client_for("doctor1").get(detail(patients["patient1"]))
    assert scorer.health()["queued"] == 0
    assert [row.kind for row in pending()] == ["phi_read"]
    assert scoring.score_pending() == 1
    assert pending() == []


def test_the_workers_scorer_scores_what_the_serving_processes_left_pending(
    background_scoring, settings, client_for, patients, requests_commit
):
    settings.SECURITY_SCORING = "worker"
    for _ in range(3):
        client_for("doctor1").get(detail(patients["patient1"]))
    assert len(pending()) == 3
    assert scorer.drain_now() == 3
    assert pending() == []


def test_the_workers_scorer_loop_stops_when_told_and_leaves_nothing_claimed(
    background_scoring, settings, client_for, patients, requests_commit
):
    settings.SECURITY_SCORING = "worker"
    client_for("doctor1").get(detail(patients["patient1"]))
    stop = threading.Event()
    stop.set()  # told to stop before its first round: it must not start one
    scorer.drain_forever(stop, idle_seconds=0)
    assert [row.claimed_by for row in pending()] == [""]
