"""The database key store: everything the master key wraps in the database is rewrapped by a
master rotation, and still opens afterwards."""

from __future__ import annotations

import pytest

from carevault.crypto import MasterKey, otp, rewrap_all
from carevault.web.accounts.models import User
from carevault.web.vault import service
from carevault.web.vault.keystore import DatabaseKeyStore

pytestmark = pytest.mark.django_db


@pytest.fixture
def enrolled(users):
    """doctor1 with a TOTP secret, wrapped by the master key as enrolment does."""
    user = users["doctor1"]
    secret = otp.generate_totp_secret()
    User.objects.filter(pk=user.pk).update(
        totp_wrapped=service.master().wrap(
            secret.expose(), {"purpose": "totp", "user": str(user.pk)}
        )
    )
    return user, secret


def test_the_store_lists_every_kind_of_wrapped_secret(patients, enrolled):
    names = set(DatabaseKeyStore().names())
    assert {f"patient:{p.pk}" for p in patients.values()} <= names
    assert "secret:audit-chain" in names
    assert any(n.startswith("signing:") for n in names)
    assert f"totp:{enrolled[0].pk}" in names


def test_a_master_rotation_rewraps_them_all_and_they_still_open(patients, enrolled):
    master = service.master()
    assert isinstance(master, MasterKey)
    master.rotate()
    try:
        report = rewrap_all(DatabaseKeyStore(), master)
        assert report.complete
        store = DatabaseKeyStore()
        assert all(master.is_current(store.get(n)) for n in store.names())
        user, secret = enrolled
        wrapped = User.objects.values_list("totp_wrapped", flat=True).get(pk=user.pk)
        assert master.unwrap(bytes(wrapped), {"purpose": "totp", "user": str(user.pk)}) == (
            secret.expose()
        )
        assert patients["patient1"].unseal("name") == "Alice Wonderland-Smith"
    finally:
        # The master file is shared by the whole test session: give the rotation back.
        service.reset_caches()
