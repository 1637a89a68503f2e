"""Hard rules beside the models: events that are attacks whatever any model says.

A model outputs a probability and can be wrong or fooled; some events are unambiguous. An AEAD
tag that fails on data *at rest* means the stored bytes were altered (nobody legitimately edits
ciphertext in the database), so it is tampering at risk 1, even on a quiet night when every
detector sees a normal clinician reading a normal record. Each rule sets a floor under the risk;
the assessment names the rules that fired.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .events import Event, EventKind


@dataclass(frozen=True)
class Rule:
    name: str
    risk: float  # the risk is at least this when the rule fires
    description: str
    matches: Callable[[Event], bool]


def _aead_failure_at_rest(event: Event) -> bool:
    return event.kind is EventKind.DECRYPTION_FAILURE and event.stored_data


def _signature_failure_at_rest(event: Event) -> bool:
    return event.kind is EventKind.SIGNATURE_FAILURE and event.stored_data


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
)


@dataclass(frozen=True)
class RuleResult:
    fired: tuple[str, ...]
    floor: float  # 0 when nothing fired


NOTHING = RuleResult((), 0.0)


def check(event: Event, rules: Sequence[Rule] = RULES) -> RuleResult:
    fired = [r for r in rules if r.matches(event)]
    if not fired:
        return NOTHING
    return RuleResult(tuple(r.name for r in fired), max(r.risk for r in fired))
