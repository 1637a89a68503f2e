"""Blind indexes: equal values (as a person means "equal") meet, everything else stays apart,
and truncation makes an index point at a crowd, not at one patient."""

from __future__ import annotations

import pytest

from carevault.crypto import (
    BlindIndex,
    ConfigurationError,
    SecretBytes,
    WeakKeyError,
    normalize_text,
)

ROOT = SecretBytes(bytes(range(32)))


def index(field: str = "last_name", bits: int = 32, root: SecretBytes = ROOT) -> BlindIndex:
    return BlindIndex(root, field, bits=bits)


def test_the_same_value_gives_the_same_index() -> None:
    assert index().compute("Dupont") == index().compute("Dupont")


@pytest.mark.parametrize(
    "variant",
    [
        "dupont",
        "DUPONT",
        "  Dupont\t",
        "\nDUPONT ",
        "\uff24\uff55\uff50\uff4f\uff4e\uff54",  # full-width "Dupont" (some input methods)
    ],
)
def test_a_value_and_its_normalised_variants_share_an_index(variant: str) -> None:
    assert index().compute(variant) == index().compute("Dupont")


def test_composed_and_decomposed_accents_share_an_index() -> None:
    composed, decomposed = "Lef\u00e8vre", "Lefe\u0300vre"
    assert composed != decomposed

    assert index().compute(composed) == index().compute(decomposed)


def test_case_folding_goes_beyond_lower_case() -> None:
    assert normalize_text("STRASSE") == normalize_text("straße") == "strasse"
    assert index().compute("Straße") == index().compute("STRASSE")


def test_different_values_give_different_indexes() -> None:
    assert index().compute("Dupont") != index().compute("Dupond")
    # Inner white space is part of the value: only the ends are trimmed.
    assert index().compute("Van Dyke") != index().compute("VanDyke")


def test_different_fields_give_different_indexes_for_the_same_value() -> None:
    # Otherwise one could see that a patient's first name equals another's last name.
    assert index("last_name").compute("Martin") != index("first_name").compute("Martin")


def test_different_root_keys_give_different_indexes() -> None:
    other = SecretBytes(bytes(range(1, 33)))
    assert index(root=ROOT).compute("Dupont") != index(root=other).compute("Dupont")


@pytest.mark.parametrize("bits", [8, 16, 32, 64, 128, 256])
def test_the_index_is_bits_over_4_hex_characters(bits: int) -> None:
    value = index(bits=bits).compute("Dupont")

    assert len(value) == bits // 4
    assert int(value, 16) >= 0


def test_a_shorter_index_is_a_prefix_of_a_longer_one() -> None:
    # Truncation, not a different function: an index can be shortened later without rekeying.
    assert index(bits=256).compute("Dupont").startswith(index(bits=32).compute("Dupont"))


@pytest.mark.parametrize("bits", [0, 4, 12, 264, -8])
def test_bits_must_be_a_multiple_of_8_between_8_and_256(bits: int) -> None:
    with pytest.raises(ConfigurationError, match=f"got {bits}"):
        index(bits=bits)


def test_a_short_root_key_is_refused() -> None:
    with pytest.raises(WeakKeyError, match="needs 32 bytes, got 16"):
        BlindIndex(SecretBytes(bytes(16)), "last_name")


def test_a_field_name_is_required() -> None:
    with pytest.raises(ConfigurationError, match="field name"):
        BlindIndex(ROOT, "")


def test_only_text_is_indexed() -> None:
    with pytest.raises(TypeError):
        index().compute(b"Dupont")  # type: ignore[arg-type]


def test_truncation_makes_values_collide_at_8_bits_and_not_at_64() -> None:
    # The point of truncation: at 8 bits, 2000 values share 256 indexes, so an index names a
    # crowd of about 8 candidates. At 64 bits every value has its own index.
    values = [f"patient-{i}" for i in range(2000)]
    short = [index(bits=8).compute(v) for v in values]
    long = [index(bits=64).compute(v) for v in values]

    assert len(set(short)) <= 256
    assert max(short.count(i) for i in set(short)) >= 2000 // 256
    assert len(set(long)) == 2000


def test_the_index_does_not_contain_the_value() -> None:
    value = "Dupont"
    computed = index(bits=256).compute(value)

    assert value.lower() not in computed.lower()
    assert value.encode().hex() not in computed


def test_a_custom_normaliser_is_used() -> None:
    digits_only = BlindIndex(ROOT, "phone", normalize=lambda v: "".join(filter(str.isdigit, v)))

    assert digits_only.compute("+33 6 12 34 56 78") == digits_only.compute("33612345678")


def test_the_repr_shows_field_and_size_only() -> None:
    assert repr(index("last_name", 16)) == "<BlindIndex last_name 16 bits>"
