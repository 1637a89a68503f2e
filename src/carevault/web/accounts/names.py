"""The attempted username, as the audit log may keep it: a keyed hash (issue 12).

People type their e-mail address, their surname, even their password into the username field,
so the text of a failed sign-in is personal data and never goes into the audit log. What the
log keeps is an HMAC-SHA256 of the normalised name under a server secret of the key hierarchy
(``service_secret("audit-username")``, wrapped by the master key): the same name always gives
the same hash, so an investigator can see that one name was tried forty times, and can check a
suspected name against the log (:func:`username_hash`), but whoever reads the log cannot test
guesses without the secret.
"""

from __future__ import annotations

import hmac
import unicodedata
from hashlib import sha256

from carevault.web.vault import service

SECRET_NAME = "audit-username"  # noqa: S105 - the name of a secret, not one


def normalise(username: str) -> str:
    """The name the counters and the audit log know an account by: "Doctor1", " doctor1" and the
    same name in fullwidth letters are one account to an attacker, so they are one to us."""
    return unicodedata.normalize("NFKC", str(username)).strip().casefold()


def username_hash(username: str) -> str:
    key = service.service_secret(SECRET_NAME).expose()
    return hmac.new(key, normalise(username).encode("utf-8"), sha256).hexdigest()[:32]
