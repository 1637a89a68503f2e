"""Backups of a CareVault deployment: a consistent snapshot of the database, the encrypted
uploads, sealed models and wrapped key material, in one encrypted and signed file.

* :mod:`.archive` is the file format (header, encrypted body, signature trailer);
* :mod:`.snapshot` takes the snapshot and puts it back (SQLite backup API, ``pg_dump``);
* :mod:`.retention` lists backups and keeps the newest N;
* :mod:`.recovery` restores the records an incident touched (Django, imported on demand).

The master key is never in a backup: restoring needs it (or enough Shamir shares of it).
"""

from .archive import BackupError

__all__ = ["BackupError"]
