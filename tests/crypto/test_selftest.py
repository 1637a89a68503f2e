import pytest

from carevault.crypto import selftest


def test_the_aes_gcm_known_answer_reproduces_the_published_vector():
    assert selftest.aes_gcm_known_answer() == "published AES-256-GCM vector reproduced"


def test_an_aes_gcm_that_does_not_reproduce_the_vector_fails_the_known_answer(monkeypatch):
    monkeypatch.setattr(
        selftest, "aes_gcm_test_only_encrypt", lambda key, nonce, pt, aad: b"\x00" * 76
    )
    with pytest.raises(AssertionError, match="does not reproduce"):
        selftest.aes_gcm_known_answer()
