import numpy as np
import pytest

from carevault.modelguard import dataset, models


def test_the_split_is_stratified_reproducible_and_malignant_is_positive() -> None:
    a, b = dataset.load_split(0), dataset.load_split(0)
    assert np.array_equal(a.X_test, b.X_test)
    assert a.n_features == 30
    assert len(a.y_train) + len(a.y_test) == 569
    # 212 of 569 cases are malignant; both halves keep about that share.
    assert int(a.y_train.sum() + a.y_test.sum()) == 212
    assert abs(a.y_test.mean() - 212 / 569) < 0.02


def test_a_different_seed_gives_a_different_split() -> None:
    assert not np.array_equal(dataset.load_split(0).X_test, dataset.load_split(1).X_test)


@pytest.mark.parametrize("kind", models.KINDS)
def test_both_models_diagnose_held_out_cases_well(kind: str) -> None:
    split = dataset.load_split()
    pipeline = models.fit(kind, split.X_train, split.y_train)
    assert pipeline.score(split.X_test, split.y_test) > 0.93


def test_the_linear_form_scores_exactly_like_the_logistic_pipeline() -> None:
    split = dataset.load_split()
    pipeline = models.fit(models.LOGISTIC, split.X_train, split.y_train)
    form = models.linear_form(pipeline)
    assert np.allclose(form.decision(split.X_test), pipeline.decision_function(split.X_test))


def test_a_forest_has_no_linear_form_and_an_unknown_kind_is_named() -> None:
    split = dataset.load_split()
    with pytest.raises(TypeError):
        models.linear_form(models.fit(models.FOREST, split.X_train, split.y_train))
    with pytest.raises(ValueError, match="unknown model kind 'svm'"):
        models.make_pipeline("svm")
