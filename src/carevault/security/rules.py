"""Hard rules beside the models: events that are attacks whatever any model says.

A model outputs a probability and can be wrong or fooled; some events are unambiguous. An AEAD
tag that fails on data *at rest* means the stored bytes were altered (nobody legitimately edits
ciphertext in the database), so it is tampering at risk 1, even on a quiet night when every
detector sees a normal clinician reading a normal record. Each rule sets a floor under the risk;
the assessment names the rules that fired.

**Pattern rules** read the event's features (the sliding-window counts the extractor keeps per
account, address and session) and name the shape of an attack no person produces by hand:
a session cookie presented from another network *and* another browser, prediction calls or
record reads at machine rates, a run of denials, repeated integrity failures on submitted data,
failures for names that are no account at a rate no person types. Their thresholds sit far above
what the simulator's benign clinic and the recorded clinic day (a shared ward workstation with
several staff and their typos, a doctor working through forty patients, a lab batch, patients
behind one carrier address) ever reach, and they stay below the suspension level: they step up,
block the session or contain the address, never rotate keys on their own.
Without features (``check(event)``) pattern rules never fire.

**Shared-count rules** (:data:`SHARED_RULES`). The feature extractor's windows live in one
process; a server runs several workers (and restarts), so an attack spread over them shows each
only a share of its requests. The web layer checks :data:`SHARED_RULES` on every event that
gates an attacker, whatever scorer is loaded, with counts read from what every worker shares
(the stored events, the login throttle): a run of denials, a spray from one address, a run of
refused login packets, a run of refused uploads, a burst of break-the-glass grants, a run of
sign-in attempts refused while paused (``Event.refused``: one summary event per run, not one
per attempt), and an account at the throttle's suspension limit or an address at one of its
limits (``throttle_limit``).
Guesses at one account are the throttle's business until then: a person's forgotten password
must not open an incident.
These rules open an incident; what it may do stays capped by the evidence (response.py):
refused attempts and failed sign-ins alone permit no response, so such an incident is watched
("observe" or "step-up" with no session to step up) and blocks nobody.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from .events import Event, EventKind
from .features import ALLOWED_SUITES, VALID_KEY_BYTES

Features = Mapping[str, float]


class _NoFeatures(Mapping[str, float]):
    """Every feature reads 0: what a rule sees when the caller has no feature vector."""

    def __getitem__(self, key: str) -> float:
        return 0.0

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


NO_FEATURES: Features = _NoFeatures()

# Content no clinical upload has: programs, scripts, web pages.
DANGEROUS_CONTENT = frozenset(
    {
        "application/x-dosexec",
        "application/x-executable",
        "application/x-sharedlib",
        "application/x-mach-binary",
        "text/html",
        "text/x-shellscript",
        "application/javascript",
        "text/javascript",
    }
)
# Submissions whose integrity is checked.
_SUBMISSIONS = frozenset(
    {EventKind.UPLOAD, EventKind.DECRYPTION_FAILURE, EventKind.SIGNATURE_FAILURE}
)
# Larger than any clinical file CareVault accepts (a DICOM study is tens to hundreds of MB).
OVERSIZED_BYTES = 1_000_000_000

# Pattern thresholds (see the module docstring for why they are where they are).
HIJACK_NETWORK_AND_CLIENT = 1.0
PREDICTIONS_PER_MINUTE = 20
RECORDS_PER_MINUTE = 90
SWEEP_PAGE = 20  # records on one page of a sweep ...
SWEEP_REQUESTS_PER_MINUTE = 30  # ... or requests a minute from the sweeping address
DENIALS_PER_10_MINUTES = 10
INTEGRITY_FAILURES_PER_10_MINUTES = 2
UNKNOWN_NAME_FAILURES_PER_5_MINUTES = 100
ACCOUNT_FAILURES_PER_DAY = 12
HOST_CPU_SATURATED = 0.85
HOST_LATENCY_DEVIATION = 1.0  # the latency feature's deviation from the host's usual
ACCOUNT_FAILURES_PER_HOUR = 10
ADDRESS_FAILURES_PER_HOUR = 15
ADDRESS_ACCOUNTS_PER_10_MINUTES = 5
# Sign-in attempts refused (paused) from one address in the throttle's window. A person told
# "paused, try again in a minute" tries again once or twice; the throttle's summary of a run
# this long comes from a program that ignores the answer.
REFUSED_PER_WINDOW = 20
# Login packets refused (malformed, tampered, replayed, foreign, expired) from one address in
# ten minutes. An honest browser sends one now and then (an old tab's expired challenge).
REJECTED_PACKETS_PER_10_MINUTES = 10
# Uploads refused (wrong type, too large, a ciphertext that does not parse) for one account in
# ten minutes. A lab technician who picked the wrong file tries again with the right one.
REJECTED_UPLOADS_PER_10_MINUTES = 10
# Break-the-glass grants opened by one doctor in an hour. An emergency shift opens one now and
# then; a burst reads records the doctor has no care relationship with, one grant at a time.
BREAKGLASS_PER_HOUR = 5


@dataclass(frozen=True)
class Rule:
    name: str
    risk: float  # the risk is at least this when the rule fires
    description: str
    matches: Callable[[Event, Features], bool]


def _aead_failure_at_rest(event: Event, f: Features) -> bool:
    return event.kind is EventKind.DECRYPTION_FAILURE and event.stored_data


def _signature_failure_at_rest(event: Event, f: Features) -> bool:
    return event.kind is EventKind.SIGNATURE_FAILURE and event.stored_data


def _forged_header(event: Event, f: Features) -> bool:
    suite = bool(event.suite_id) and event.suite_id not in ALLOWED_SUITES
    key = bool(event.key_bytes) and event.key_bytes not in VALID_KEY_BYTES
    return suite or key


def _broken_header(event: Event, f: Features) -> bool:
    return event.kind is EventKind.UPLOAD and not event.header_ok


def _dangerous_content(event: Event, f: Features) -> bool:
    return event.kind is EventKind.UPLOAD and event.sniffed_type in DANGEROUS_CONTENT


def _oversized_upload(event: Event, f: Features) -> bool:
    return event.kind is EventKind.UPLOAD and event.upload_bytes >= OVERSIZED_BYTES


def _repeated_integrity_failures(event: Event, f: Features) -> bool:
    # On the failing submissions themselves: the account's other requests (its owner's reads,
    # while someone uploads forged files with it) are not the evidence.
    return (
        event.kind in _SUBMISSIONS
        and f["crypto_fail_actor_10m"] >= INTEGRITY_FAILURES_PER_10_MINUTES
    )


def _session_moved(event: Event, f: Features) -> bool:
    # A carrier NAT moves a phone to another address, even another network; it does not change
    # the browser. A cookie presented by another browser on another network is a stolen one.
    return (
        f["session_client_changed"] >= HIJACK_NETWORK_AND_CLIENT
        and f["session_network_changed"] >= HIJACK_NETWORK_AND_CLIENT
    )


def _prediction_sweep(event: Event, f: Features) -> bool:
    return event.kind is EventKind.PREDICTION and (
        f["pred_actor_1m"] >= PREDICTIONS_PER_MINUTE
        or f["pred_client_1m"] >= PREDICTIONS_PER_MINUTE
    )


def _record_sweep(event: Event, f: Features) -> bool:
    # The account's read count is shared by all its sessions: the owner's own session, while a
    # thief scrapes with the account elsewhere, sees it too. So the event itself must look like
    # the sweep: a page of many records, or one of a stream of requests from its address.
    return (
        event.kind is EventKind.PHI_READ
        and f["reads_actor_1m"] >= RECORDS_PER_MINUTE
        and (event.records >= SWEEP_PAGE or f["rate_address_1m"] >= SWEEP_REQUESTS_PER_MINUTE)
    )


def _denial_run(event: Event, f: Features) -> bool:
    return event.kind is EventKind.ACCESS_DENIED and f["denied_actor_10m"] >= DENIALS_PER_10_MINUTES


def _unknown_name_flood(event: Event, f: Features) -> bool:
    # Failures for names that are no account, clinic-wide, at a rate no person types: credential
    # stuffing and username enumeration. A person's typo names an account or one wrong name.
    return (
        event.kind is EventKind.LOGIN_FAILURE
        and not event.role
        and f["fail_global_5m"] >= UNKNOWN_NAME_FAILURES_PER_5_MINUTES
        and f["fail_address_1h"] >= 2  # not the first failure from its address
    )


def _host_saturated(event: Event, f: Features) -> bool:
    # The host's CPU pinned while requests slow down: a flood of expensive requests (sign-ins
    # make argon2 work). A nightly backup raises the CPU, not the latency of every request.
    return (
        event.kind is EventKind.HOST
        and event.cpu >= HOST_CPU_SATURATED
        and f["latency_dev"] >= HOST_LATENCY_DEVIATION
    )


def _account_guessing(event: Event, f: Features) -> bool:
    # Guesses at one account. A person who forgot their password gives up (or is backed off by
    # the throttle) well before ten tries in an hour. The floor is the step-up level: a failed
    # sign-in has no session to challenge, so this alerts without blocking anyone; the
    # account's back-off (accounts.throttle) is what slows the guesser.
    return event.kind is EventKind.LOGIN_FAILURE and (
        f["fail_account_1h"] >= ACCOUNT_FAILURES_PER_HOUR
        or f["fail_account_1d"] >= ACCOUNT_FAILURES_PER_DAY
    )


def _address_spray(event: Event, f: Features) -> bool:
    # Failures across many account names from one address: password spraying. A ward
    # workstation shared by the whole team stays far below both counts in an hour.
    return (
        event.kind is EventKind.LOGIN_FAILURE
        and f["fail_address_1h"] >= ADDRESS_FAILURES_PER_HOUR
        and f["accounts_address_10m"] >= ADDRESS_ACCOUNTS_PER_10_MINUTES
    )


def _refused_run(event: Event, f: Features) -> bool:
    return event.kind is EventKind.LOGIN_FAILURE and event.refused >= REFUSED_PER_WINDOW


def _packet_run(event: Event, f: Features) -> bool:
    return (
        event.kind is EventKind.PACKET_REJECTED
        and f["rejects_address_10m"] >= REJECTED_PACKETS_PER_10_MINUTES
    )


def _upload_run(event: Event, f: Features) -> bool:
    return (
        event.kind is EventKind.UPLOAD
        and event.outcome != "ok"
        and f["rejected_uploads_actor_10m"] >= REJECTED_UPLOADS_PER_10_MINUTES
    )


def _breakglass_burst(event: Event, f: Features) -> bool:
    return event.kind is EventKind.PHI_WRITE and f["breakglass_actor_1h"] >= BREAKGLASS_PER_HOUR


def _throttle_limit(event: Event, f: Features) -> bool:
    # The web layer's count: 1 when the throttle's evidence of an attack is in force for the
    # event's address or account (an address limit reached, the account's suspension limit).
    return (
        event.kind in (EventKind.LOGIN_FAILURE, EventKind.PACKET_REJECTED)
        and f["throttle_limit"] >= 1
    )


RULES: tuple[Rule, ...] = (
    Rule(
        "aead_failure_at_rest",
        1.0,
        "an authentication tag failed on stored data: the ciphertext at rest was altered",
        _aead_failure_at_rest,
    ),
    Rule(
        "signature_failure_at_rest",
        0.95,
        "a stored signed record no longer verifies: it was altered after signing",
        _signature_failure_at_rest,
    ),
    Rule(
        "forged_ciphertext_header",
        0.75,
        "a submitted ciphertext names a suite or a key length CareVault never writes",
        _forged_header,
    ),
    Rule(
        "broken_ciphertext_header",
        0.6,
        "a submitted ciphertext's header does not parse",
        _broken_header,
    ),
    Rule(
        "dangerous_upload_content",
        0.75,
        "an upload's content is a program, a script or a web page",
        _dangerous_content,
    ),
    Rule(
        "oversized_upload",
        0.6,
        "an upload larger than any clinical file",
        _oversized_upload,
    ),
    Rule(
        "repeated_integrity_failures",
        0.75,
        "submitted data failed its integrity check again within ten minutes",
        _repeated_integrity_failures,
    ),
    Rule(
        "session_cookie_moved",
        0.75,
        "a session was used from another network and another browser than it was opened in",
        _session_moved,
    ),
    Rule(
        "prediction_sweep",
        0.75,
        f"{PREDICTIONS_PER_MINUTE}+ prediction calls in a minute: a model being extracted",
        _prediction_sweep,
    ),
    Rule(
        "record_sweep",
        0.75,
        f"{RECORDS_PER_MINUTE}+ patient records read in a minute: records being scraped",
        _record_sweep,
    ),
    Rule(
        "denial_run",
        0.75,
        f"{DENIALS_PER_10_MINUTES}+ denials for one account in ten minutes: privileges probed",
        _denial_run,
    ),
    Rule(
        "unknown_name_flood",
        0.7,
        f"{UNKNOWN_NAME_FAILURES_PER_5_MINUTES}+ failed sign-ins in five minutes, this one for a "
        "name that is no account: credential stuffing or enumeration",
        _unknown_name_flood,
    ),
    Rule(
        "host_saturated",
        0.6,
        f"the host's CPU at {HOST_CPU_SATURATED:.0%}+ while requests are far slower than usual",
        _host_saturated,
    ),
    Rule(
        "account_guessing",
        0.6,
        f"{ACCOUNT_FAILURES_PER_HOUR}+ failed sign-ins for one account name in an hour, or "
        f"{ACCOUNT_FAILURES_PER_DAY}+ in a day (guesses spread over proxies and hours)",
        _account_guessing,
    ),
    Rule(
        "address_spray",
        0.7,
        f"{ADDRESS_FAILURES_PER_HOUR}+ failed sign-ins in an hour from one address across "
        f"{ADDRESS_ACCOUNTS_PER_10_MINUTES}+ account names: password spraying",
        _address_spray,
    ),
)


REFUSED_RUN = Rule(
    "refused_run",
    0.6,
    f"{REFUSED_PER_WINDOW}+ sign-in attempts from one address refused while paused: a program "
    "that ignores the pause (brute force, spraying, junk packets)",
    _refused_run,
)
PACKET_RUN = Rule(
    "packet_run",
    0.6,
    f"{REJECTED_PACKETS_PER_10_MINUTES}+ login packets refused from one address in ten minutes: "
    "forged, tampered or replayed packets",
    _packet_run,
)
UPLOAD_RUN = Rule(
    "upload_run",
    0.6,
    f"{REJECTED_UPLOADS_PER_10_MINUTES}+ uploads refused for one account in ten minutes: "
    "the upload checks being probed",
    _upload_run,
)
BREAKGLASS_BURST = Rule(
    "breakglass_burst",
    0.6,
    f"{BREAKGLASS_PER_HOUR}+ break-the-glass grants opened by one account in an hour",
    _breakglass_burst,
)
THROTTLE_LIMIT = Rule(
    "throttle_limit",
    0.6,
    "the login throttle's evidence of an attack: an address at one of its limits (many names, "
    "unknown names at a machine's rate, forged packets) or an account at its suspension limit",
    _throttle_limit,
)
_BY_NAME = {rule.name: rule for rule in RULES}
# Checked by the web layer with counts every worker shares (see the module docstring).
SHARED_RULES: tuple[Rule, ...] = (
    _BY_NAME["denial_run"],
    _BY_NAME["address_spray"],
    REFUSED_RUN,
    PACKET_RUN,
    UPLOAD_RUN,
    BREAKGLASS_BURST,
    THROTTLE_LIMIT,
)
# The counts SHARED_RULES read (the rest of a feature vector reads 0 to them).
SHARED_COUNTS = frozenset(
    {
        "denied_actor_10m",
        "fail_address_1h",
        "accounts_address_10m",
        "rejects_address_10m",
        "rejected_uploads_actor_10m",
        "breakglass_actor_1h",
        "throttle_limit",
    }
)


class Counts(Mapping[str, float]):
    """Named counts read as features; any other feature reads 0."""

    __slots__ = ("_counts",)

    def __init__(self, counts: Mapping[str, float]) -> None:
        self._counts = dict(counts)

    def __getitem__(self, key: str) -> float:
        return float(self._counts.get(key, 0.0))

    def __iter__(self) -> Iterator[str]:
        return iter(self._counts)

    def __len__(self) -> int:
        return len(self._counts)


@dataclass(frozen=True)
class RuleResult:
    fired: tuple[str, ...]
    floor: float  # 0 when nothing fired


NOTHING = RuleResult((), 0.0)


def check(
    event: Event, rules: Sequence[Rule] = RULES, features: Features | None = None
) -> RuleResult:
    f = NO_FEATURES if features is None else features
    fired = [r for r in rules if r.matches(event, f)]
    if not fired:
        return NOTHING
    return RuleResult(tuple(r.name for r in fired), max(r.risk for r in fired))


class FeatureRow(Mapping[str, float]):
    """A feature vector read by name (no copy)."""

    __slots__ = ("_index", "_row")

    def __init__(self, row: Sequence[float], index: Mapping[str, int]) -> None:
        self._row = row
        self._index = index

    def __getitem__(self, key: str) -> float:
        return float(self._row[self._index[key]])

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)


def feature_index() -> dict[str, int]:
    from .features import FEATURE_NAMES

    return {name: i for i, name in enumerate(FEATURE_NAMES)}
