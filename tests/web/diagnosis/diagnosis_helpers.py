"""Sealed diagnosis models in a data directory of their own, for the web tests."""

from __future__ import annotations

from pathlib import Path

from carevault.modelguard import dataset, diagnosis_training
from carevault.modelstore.datadir import model_store
from carevault.web.diagnosis import serving

SPLIT = dataset.load_split()
NAMES = dataset.feature_names()


def seal_models(data_dir: Path) -> None:
    reports = diagnosis_training.train(model_store(data_dir), seed=dataset.DEFAULT_SEED)
    assert all(r.sealed for r in reports), [r.failures for r in reports]


def case(index: int) -> dict[str, float]:
    """Test-set case ``index`` as the 30 named features."""
    return {n: float(v) for n, v in zip(NAMES, SPLIT.X_test[index], strict=True)}


def first_case(label: int) -> int:
    return int(next(i for i, y in enumerate(SPLIT.y_test) if y == label))


def use(settings, data_dir: Path) -> None:
    settings.DATA_DIR = data_dir
    serving.reset()
