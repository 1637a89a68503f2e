"""Which writes hold *sensitive* data (mental health, HIV / sexual health, genetic, substance
use, reproductive), for the encryption policy's per-class floor (issue 6).

A record is sensitive when a clinician marked it so (a diagnosis's data class) or when what it
names falls in a sensitive category: an ICD-10 code in the ranges below, or a lab test whose
name names such a test. The check only ever *adds* protection: a miss leaves the record at the
ordinary requirement, which is still AES-GCM under the patient's key, and a false match costs a
little CPU. It runs on the plaintext at write time, in memory, and keeps nothing of it.
"""

from __future__ import annotations

import re

from .policy import DataClass

# ICD-10 chapters and blocks a hospital's privacy officer treats as specially protected:
# F00-F99 mental and behavioural disorders (F10-F19 substance use), B20-B24 HIV disease,
# Z21 asymptomatic HIV, A50-A64 sexually transmitted infections, O00-O08 pregnancy with
# abortive outcome, Z15 genetic susceptibility, Q90-Q99 chromosomal abnormalities,
# Z30-Z31 contraception and procreative management, Z71.4-Z71.5 substance counselling.
_SENSITIVE_ICD = re.compile(
    r"^(?:F\d|B2[0-4]|Z21|A5\d|A6[0-4]|O0[0-8]|Z15|Q9\d|Z3[01]|Z71\.?[45])", re.IGNORECASE
)
_SENSITIVE_TERMS = re.compile(
    r"\b(?:hiv|aids|cd4|viral load|hepatitis|syphilis|chlamydia|gonorrh\w*|std|sti|genetic\w*|"
    r"genom\w*|brca\d?|karyotyp\w*|dna|exome|carrier screen\w*|paternity|pregnan\w*|hcg|"
    r"toxicolog\w*|drug screen\w*|opioid\w*|alcohol|psychiatr\w*|mental|depress\w*|"
    r"schizo\w*|bipolar|suicid\w*)\b",
    re.IGNORECASE,
)


def of_icd10(code: str) -> DataClass:
    """Sensitive for codes in the protected ICD-10 ranges."""
    return DataClass.SENSITIVE if _SENSITIVE_ICD.match(code.strip()) else DataClass.ORDINARY


def of_text(text: str) -> DataClass:
    """Sensitive when free text (a lab test's name) names a protected category."""
    return DataClass.SENSITIVE if _SENSITIVE_TERMS.search(text) else DataClass.ORDINARY


def strongest(*classes: DataClass) -> DataClass:
    """The class of a record whose parts have these classes: sensitive if any part is."""
    return DataClass.SENSITIVE if DataClass.SENSITIVE in classes else DataClass.ORDINARY
