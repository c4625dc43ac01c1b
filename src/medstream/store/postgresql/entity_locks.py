"""PostgreSQL's locks on entities, taken by the statements that read them for a write: the rows a write
checks then replaces, the patients its entities link to, and a patient delete's hold on the writes that link
to patients. Every lock on entity rows is taken in id order by bytes (COLLATE "C"), so that writes never
deadlock."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Table, bindparam, exists, select

from medstream.store.entity_rows import EntityRow, row_query, rows_in_chunks
from medstream.store.patient_links import PATIENT_LINKS
from medstream.store.schema import ENTITY_TABLES, entity_readers

_PATIENTS = ENTITY_TABLES["Patient"]
_PATIENT_ACCESS_COLUMNS = select(
    _PATIENTS.c.id,
    _PATIENTS.c.deleted,
    exists().where(
        entity_readers.c.entity_type == "Patient",
        entity_readers.c.data_owner_id == bindparam("owner"),
        entity_readers.c.entity_id == _PATIENTS.c.id,
    ),
)
# The patients are locked FOR SHARE until the write commits, so that a delete of one of them (FOR UPDATE) cannot
# commit between this check and the write's commit.
_PATIENT_ACCESS = (
    _PATIENT_ACCESS_COLUMNS.where(_PATIENTS.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(_PATIENTS.c.id.collate("C"))
    .with_for_update(read=True, of=_PATIENTS)
)
_PATIENT_ACCESS_ONE = _PATIENT_ACCESS_COLUMNS.where(_PATIENTS.c.id == bindparam("id")).with_for_update(
    read=True, of=_PATIENTS
)
# A patient delete's lock on the tables of the kinds that link to patients: it conflicts with the ROW EXCLUSIVE
# lock of every write to them, and with itself, so two patient deletes take turns.
_HOLD_OFF_PATIENT_LINKS = (
    f"LOCK TABLE {', '.join(ENTITY_TABLES[name].name for name in sorted(PATIENT_LINKS))} IN SHARE ROW EXCLUSIVE MODE"
)


def rows_by_id(conn: Connection, table: Table, ids: Sequence[str], *, lock: bool) -> dict[str, EntityRow]:
    """With `lock` (READ COMMITTED), the rows stay locked until the transaction ends, so that a concurrent writer
    waits and then sees the new rev (else both pass the rev check and one update is lost)."""
    if lock:
        ids = sorted(ids)
    if len(ids) == 1:  # the common case, and a plain equality is cheaper to run than an expanding IN
        found = conn.execute(row_query(table, lock), {"id": ids[0]})
        return {row[0]: EntityRow(*row) for row in found}
    return rows_in_chunks(conn, table, ids, lock=lock)


def patient_access(conn: Connection, ids: list[str], owner: str | None) -> Sequence[Sequence[Any]]:
    if len(ids) > 1:
        return list(conn.execute(_PATIENT_ACCESS, {"owner": owner, "ids": ids}))
    # one id: a plain equality, compiled once (an expanding IN is compiled again at every call)
    return list(conn.execute(_PATIENT_ACCESS_ONE, {"owner": owner, "id": ids[0]}))


def hold_off_patient_links(conn: Connection) -> None:
    """A create of one statement locks no patient row (`postgresql.creates`): this waits for those in progress
    and holds off new ones until the delete commits."""
    conn.exec_driver_sql(_HOLD_OFF_PATIENT_LINKS)


def take_turns(conn: Connection, key: int) -> None:
    """A transaction-scoped advisory lock on `key`: the next statement's snapshot (READ COMMITTED) sees what the
    transaction that held it committed."""
    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({int(key)})")
