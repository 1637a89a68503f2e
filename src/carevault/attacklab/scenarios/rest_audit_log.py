"""Tampering with the audit log in a stolen copy of the database.

The audit log is a table of MAC'd entries in the database (an HMAC chain with a head row, for
entries written before batches), sealed in batches whose state is also anchored outside it, in
signed checkpoints (``audit/checkpoints.jsonl``). With write access to the database and the
data directory, the attacker edits an entry, re-orders two, deletes one, truncates the tail past
a checkpoint with the head rewound and the batches past it deleted to match, wipes the log (its
head reset, its batches deleted), forges a line of the checkpoint file and deletes that file
after a truncation, each on a fresh copy; then ``carevault audit verify`` runs on the copy.
Held: it fails on every one.

``rest.audit-tail-cut`` (full lab only) cuts just the entries written after the newest
checkpoint (the unsealed ones), head and SQLite's id counter rewound to match: a limit the
threat model documents (entries are sealed once more than 100 wait or the oldest waited 60 s,
and at each ``audit verify`` / ``audit seal``); it reports how many entries went silently.
"""

# ruff: noqa: S608 - table and column names come from the stolen copy's own schema

from __future__ import annotations

import json
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path

from carevault.attacklab.bounds import Bounds
from carevault.attacklab.context import Context
from carevault.attacklab.lab import Files
from carevault.attacklab.scenario import Outcome, Scenario

from ._rest import database

Tamper = Callable[[sqlite3.Connection, Files, int], str]  # -> what was done


def audit_tables(connection: sqlite3.Connection) -> tuple[str, str]:
    """(entries, head): found from the schema (``seq`` + ``prev_digest`` + ``digest``; ``seq`` +
    ``digest`` without ``prev_digest``)."""
    entries = head = ""
    for (table,) in connection.execute("select name from sqlite_master where type='table'"):
        columns = {r[1] for r in connection.execute(f'pragma table_info("{table}")')}
        if {"seq", "digest", "prev_digest"} <= columns:
            entries = table
        elif {"seq", "digest"} <= columns:
            head = table
    if not entries or not head:
        raise RuntimeError("no audit chain found in the schema")
    return entries, head


# A checkpoint of the chained log ("audit") or of a sealed batch ("audit-batch"): both carry the
# highest entry they cover as "seq".
CHECKPOINT_KINDS = ("audit", "audit-batch")


def batch_table(connection: sqlite3.Connection) -> str:
    """The table of sealed batches (``root`` + ``prev_hash`` + ``last_seq``), or ""."""
    for (table,) in connection.execute("select name from sqlite_master where type='table'"):
        columns = {r[1] for r in connection.execute(f'pragma table_info("{table}")')}
        if {"root", "prev_hash", "last_seq"} <= columns:
            return str(table)
    return ""


def _drop_batches_after(connection: sqlite3.Connection, seq: int) -> None:
    """The batches that sealed anything after ``seq`` go too (a consistent, shorter log)."""
    batches = batch_table(connection)
    if batches:
        connection.execute(f'delete from "{batches}" where last_seq > ?', (seq,))


def latest_checkpoint(files: Files) -> int:
    """The newest audit checkpoint's seq in the copy's checkpoint file (0 if none)."""
    path = files.data_dir / "audit" / "checkpoints.jsonl"
    seqs = [0]
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("kind") in CHECKPOINT_KINDS:
                seqs.append(int(record.get("seq", 0)))
    return max(seqs)


def _last(connection: sqlite3.Connection, entries: str) -> int:
    return int(connection.execute(f'select max(seq) from "{entries}"').fetchone()[0] or 0)


def _rewind_head(connection: sqlite3.Connection, entries: str, head: str, seq: int) -> None:
    row = connection.execute(f'select digest from "{entries}" where seq = ?', (seq,)).fetchone()
    digest = row[0] if row else "0" * 64
    connection.execute(f'update "{head}" set seq = ?, digest = ?', (seq, digest))
    # SQLite's id counter too: it would otherwise show ids given to rows no longer there.
    if connection.execute("select 1 from sqlite_master where name = 'sqlite_sequence'").fetchone():
        connection.execute("update sqlite_sequence set seq = ? where name = ?", (seq, entries))


def edit(connection: sqlite3.Connection, files: Files, anchor: int) -> str:
    entries, _ = audit_tables(connection)
    seq = max(1, _last(connection, entries) // 2)
    connection.execute(
        f'update "{entries}" set outcome = ?, actor = ? where seq = ?', ("ok", "system", seq)
    )
    return f"entry {seq} edited (actor and outcome)"


def reorder(connection: sqlite3.Connection, files: Files, anchor: int) -> str:
    entries, _ = audit_tables(connection)
    a = max(1, _last(connection, entries) // 3)
    b = a + 1
    connection.execute(f'update "{entries}" set seq = -1 where seq = ?', (a,))
    connection.execute(f'update "{entries}" set seq = ? where seq = ?', (a, b))
    connection.execute(f'update "{entries}" set seq = ? where seq = -1', (b,))
    return f"entries {a} and {b} swapped"


def delete_one(connection: sqlite3.Connection, files: Files, anchor: int) -> str:
    entries, _ = audit_tables(connection)
    seq = max(1, _last(connection, entries) // 2)
    connection.execute(f'delete from "{entries}" where seq = ?', (seq,))
    return f"entry {seq} deleted"


def truncate_past_checkpoint(connection: sqlite3.Connection, files: Files, anchor: int) -> str:
    entries, head = audit_tables(connection)
    keep = max(0, anchor - 5)
    connection.execute(f'delete from "{entries}" where seq > ?', (keep,))
    _rewind_head(connection, entries, head, keep)
    _drop_batches_after(connection, keep)
    return f"tail cut after entry {keep} (a checkpoint recorded {anchor}), head rewound"


def wipe(connection: sqlite3.Connection, files: Files, anchor: int) -> str:
    entries, head = audit_tables(connection)
    connection.execute(f'delete from "{entries}"')
    connection.execute(f'update "{head}" set seq = 0, digest = ?', ("0" * 64,))
    _drop_batches_after(connection, -1)
    return "every entry deleted, head reset"


def forge_checkpoint(connection: sqlite3.Connection, files: Files, anchor: int) -> str:
    """Lower the newest audit checkpoint's seq and count in the file (to hide a truncation)."""
    path = files.data_dir / "audit" / "checkpoints.jsonl"
    lines = path.read_text().splitlines()
    for number in range(len(lines) - 1, -1, -1):
        record = json.loads(lines[number])
        if record.get("kind") in CHECKPOINT_KINDS:
            record["seq"] = record["count"] = max(0, int(record["seq"]) - 5)
            lines[number] = json.dumps(record, sort_keys=True)
            break
    path.write_text("\n".join(lines) + "\n")
    truncate = truncate_past_checkpoint(connection, files, anchor)
    return f"checkpoint line edited to match a truncation ({truncate})"


def delete_checkpoints(connection: sqlite3.Connection, files: Files, anchor: int) -> str:
    (files.data_dir / "audit" / "checkpoints.jsonl").unlink(missing_ok=True)
    wipe(connection, files, anchor)
    return "checkpoint file deleted and the log wiped"


def tail_cut(connection: sqlite3.Connection, files: Files, anchor: int) -> str:
    entries, head = audit_tables(connection)
    last = _last(connection, entries)
    connection.execute(f'delete from "{entries}" where seq > ?', (anchor,))
    _rewind_head(connection, entries, head, anchor)
    _drop_batches_after(connection, anchor)  # none: what is after the checkpoint is unsealed
    return f"{last - anchor} entries after the newest checkpoint ({anchor}) cut, head rewound"


TAMPERS: list[Tamper] = [
    edit,
    reorder,
    delete_one,
    truncate_past_checkpoint,
    wipe,
    forge_checkpoint,
    delete_checkpoints,
]


def _attack(ctx: Context, tampers: list[Tamper]) -> tuple[list[tuple[str, bool, str]], int, int]:
    """Each tamper on a fresh copy: (what, audit verify failed, its first problem); the anchor
    seq and the chain's length in the original copy."""
    files = ctx.need_files()
    results = []
    with tempfile.TemporaryDirectory(prefix="cv-audit-") as tmp:
        root = Path(tmp)
        original = files.copy(root / "original")
        anchor = latest_checkpoint(original)
        with database(original) as connection:
            entries, _ = audit_tables(connection)
            length = _last(connection, entries)
        for number, tamper in enumerate(tampers):
            if not ctx.time_left():
                break
            stolen = original.copy(root / f"t{number}")
            with database(stolen) as connection:
                what = tamper(connection, stolen, anchor)
            done = stolen.cli("audit", "verify", "--json", check=False, timeout=120)
            try:
                problems = json.loads(done.stdout).get("problems", [])
            except ValueError:
                problems = [(done.stderr or done.stdout).strip()[-200:]]
            failed = done.returncode != 0
            results.append((what, failed, str(problems[0]) if problems else ""))
    return results, anchor, length


def run(ctx: Context) -> Outcome:
    results, anchor, length = _attack(ctx, TAMPERS)
    findings = [
        f"{what}: audit verify {'FAILED (' + first[:90] + ')' if failed else 'PASSED'}"
        for what, failed, first in results
    ]
    missed = sum(1 for _, failed, _ in results if not failed)
    complete = len(results) == len(TAMPERS)
    if not complete:
        findings.append(f"only {len(results)}/{len(TAMPERS)} tampers ran within the time bound")
    return Outcome(
        held=complete and missed == 0,
        defences=["audit verify"] if any(failed for _, failed, _ in results) else [],
        lost=missed,
        findings=findings,
        metrics={
            "tampers": len(results),
            "detected": len(results) - missed,
            "entries": length,
            "newest_checkpoint": anchor,
        },
    )


INSIDER = "doctor2"


def run_tail_cut(ctx: Context) -> Outcome:
    # The insider's own reads are the entries to hide: sign in, list the patients, sign out.
    insider = ctx.client()
    ctx.accounts.add(INSIDER)
    insider.login(INSIDER, ctx.password(INSIDER))
    insider.get("/api/v1/patients")
    insider.logout()
    results, anchor, length = _attack(ctx, [tail_cut])
    what, failed, first = results[0]
    cut = length - anchor
    findings = [f"{what}: audit verify {'FAILED (' + first[:90] + ')' if failed else 'PASSED'}"]
    if not failed and cut:
        findings.append(
            "entries written after the newest checkpoint can be cut unseen (documented limit: "
            "checkpoints every 100 entries, at each audit verify, by audit checkpoint)"
        )
    return Outcome(
        held=failed or cut == 0,
        defences=["audit verify"] if failed else [],
        lost=0 if failed else cut,
        findings=findings,
        metrics={"entries": length, "newest_checkpoint": anchor, "cut": cut},
    )


SCENARIOS = [
    Scenario(
        name="rest.audit-log",
        category="data at rest",
        attacks="the audit log in a stolen copy: an entry edited, two re-ordered, one deleted, the "
        "tail truncated past a checkpoint, the log wiped, a checkpoint forged or deleted",
        held_means="carevault audit verify fails on every tampered copy",
        bounds=Bounds(requests=0, seconds=120),
        quick_bounds=Bounds(requests=0, seconds=60),
        run=run,
        needs_files=True,
    ),
    Scenario(
        name="rest.audit-tail-cut",
        category="data at rest",
        attacks="an insider's own audit entries (sign-in, a PHI listing), written after the "
        "newest signed checkpoint, cut from a stolen copy with the head rewound to match",
        held_means="carevault audit verify fails (or nothing was left unanchored to cut)",
        bounds=Bounds(requests=10, seconds=60),
        run=run_tail_cut,
        needs_files=True,
        in_quick=False,
    ),
]
