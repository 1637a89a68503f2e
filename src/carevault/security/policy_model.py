"""The trained encryption policy as it is sealed: the Random Forest, the table compiled from it,
and everything it was made from (training data, the labelling rule, the measured cost model).

Keeping the training data and the rule inside the sealed bundle means they are signed with the
model: what an auditor reads is exactly what produced the table in force. :func:`load_policy`
unseals it from a data directory (falling back to the strongest suite), which is why it lives
here and not in :mod:`.policy`: the guards stay at the bottom, importing no model or store.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from carevault.modelstore.datadir import model_store
from carevault.modelstore.store import ModelStore, SealedModelError

from .policy import (
    ALLOWED_SUITES,
    GRID_FEATURES,
    GRID_SHAPE,
    GRID_VERSION,
    MODEL_NAME,
    EncryptionPolicy,
    strongest_policy,
)

# Loading is logged under the policy's name, as it was before it moved here: operators (and
# their log filters) know "the encryption policy", not the module that unseals it.
log = logging.getLogger("carevault.security.policy")

# Every type a sealed policy may contain beyond skops' own safe list (which covers numpy and the
# scikit-learn forest classes).
TRUSTED_TYPES: tuple[str, ...] = (
    "carevault.security.policy_model.PolicyModel",
    "sklearn.tree._tree.Tree",
)


class PolicyModel:
    """A fitted forest and its compiled table (``table_``: one code per grid cell, an index into
    ``suites_``, which must equal the policy's allow-list)."""

    def __init__(
        self,
        forest: Any,
        table: NDArray[np.uint8],
        *,
        training_inputs: NDArray[np.float64],
        training_labels: NDArray[np.int64],
        input_columns: list[str],
        rule: dict[str, Any],
        costs: dict[str, Any],
        report: dict[str, Any],
    ) -> None:
        self.forest_ = forest
        self.table_ = np.asarray(table, dtype=np.uint8)
        self.suites_ = [s.label for s in ALLOWED_SUITES]
        self.grid_version_ = GRID_VERSION
        self.grid_features_ = list(GRID_FEATURES)
        self.grid_shape_ = list(GRID_SHAPE)
        self.training_inputs_ = training_inputs
        self.training_labels_ = training_labels
        self.input_columns_ = list(input_columns)
        self.rule_ = dict(rule)
        self.costs_ = dict(costs)
        self.report_ = dict(report)

    def check(self) -> None:
        """Refuse a bundle this version of CareVault would read differently."""
        if self.suites_ != [s.label for s in ALLOWED_SUITES]:
            raise SealedModelError("the sealed policy was made for another allow-list of suites")
        if self.grid_version_ != GRID_VERSION or list(self.grid_shape_) != list(GRID_SHAPE):
            raise SealedModelError(
                "the sealed policy was compiled for another input grid: run "
                "`carevault security train-policy` again"
            )


def load_compiled(store: ModelStore, version: int | None = None) -> EncryptionPolicy:
    """The sealed policy as a ready :class:`EncryptionPolicy`; raises if anything is off."""
    model, info = store.load(MODEL_NAME, version, trusted_types=TRUSTED_TYPES)
    if not isinstance(model, PolicyModel):
        raise SealedModelError(f"model {MODEL_NAME!r} v{info.version} is not an encryption policy")
    model.check()
    report = model.report_
    return EncryptionPolicy(
        model.table_,
        info={
            "version": info.version,
            "trained_at": str(info.manifest.get("created_at", "")),
            "seed": report.get("seed"),
            "accuracy": report.get("accuracy", {}),
            "label_distribution": report.get("label_distribution", {}),
        },
    )


def load_policy(data_dir: str | Path) -> EncryptionPolicy:
    """The sealed trained policy in ``data_dir/models`` (``carevault security train-policy``).
    A missing or refused model gives :func:`~.policy.strongest_policy` (logged), never an
    exception."""
    if not (Path(data_dir) / "models" / MODEL_NAME).is_dir():
        log.info("no trained encryption policy in %s: using the strongest suite", data_dir)
        return strongest_policy()
    try:
        return load_compiled(model_store(data_dir))
    except Exception as exc:  # any failure at all must leave the platform encrypting strongly
        log.warning(
            "the trained encryption policy was refused (%s: %s): using the strongest suite",
            type(exc).__name__,
            str(exc)[:200],
        )
        return strongest_policy()
