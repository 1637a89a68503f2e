"""Sensitive-data classification for the encryption policy's per-class floor."""

from __future__ import annotations

import pytest

from carevault.security import data_classes
from carevault.security.policy import DataClass


@pytest.mark.parametrize("code", ["F32.1", "f20", "B20", "Z21", "A53.9", "O03", "Z15.01", "Q90"])
def test_protected_icd10_codes_are_sensitive(code: str) -> None:
    assert data_classes.of_icd10(code) is DataClass.SENSITIVE


@pytest.mark.parametrize("code", ["I10", "E11.9", "J45", "B19", "A49", "", "Z00"])
def test_other_codes_are_ordinary(code: str) -> None:
    assert data_classes.of_icd10(code) is DataClass.ORDINARY


@pytest.mark.parametrize(
    "test", ["HIV-1/2 antibody", "BRCA1 genetic panel", "Urine drug screen", "CD4 count"]
)
def test_lab_tests_naming_a_protected_category_are_sensitive(test: str) -> None:
    assert data_classes.of_text(test) is DataClass.SENSITIVE


@pytest.mark.parametrize("test", ["Full blood count", "HbA1c", "Lipid panel", "Thyroid (TSH)"])
def test_ordinary_lab_tests_are_ordinary(test: str) -> None:
    assert data_classes.of_text(test) is DataClass.ORDINARY


def test_a_record_is_sensitive_when_any_part_is() -> None:
    assert data_classes.strongest(DataClass.ORDINARY, DataClass.SENSITIVE) is DataClass.SENSITIVE
    assert data_classes.strongest(DataClass.ORDINARY) is DataClass.ORDINARY
    assert data_classes.strongest() is DataClass.ORDINARY
