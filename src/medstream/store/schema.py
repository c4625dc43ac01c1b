"""The SQL schema as SQLAlchemy Core tables, and what each entity kind stores in its indexed columns.

Every entity kind has its own table: the JSON document plus the scalar columns filters need. Set-valued
fields (labels, codes, identifiers, linked ids) live in `entity_terms`, readers in `entity_readers`; both are
shared by all kinds and keyed by entity type. The outbox is the event log (docs/guarantees.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, String, Table, Text

from medstream.filters.names import search_name
from medstream.model.common import Entity
from medstream.model.data_sample import DataSample
from medstream.model.entities import ENTITY_KINDS, EntityKind
from medstream.model.exchange_data import ExchangeData
from medstream.model.healthcare_element import HealthcareElement
from medstream.model.notification import Notification
from medstream.model.patient import Patient
from medstream.model.user import User

metadata = MetaData()

# SQLite only aliases the rowid for a column declared exactly INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


@dataclass(frozen=True)
class IndexedColumn:
    """A scalar column of an entity table, filled from the entity on every write."""

    name: str
    type: Any
    extract: Callable[[Entity], Any]
    indexed: bool = True


KIND_COLUMNS: dict[str, tuple[IndexedColumn, ...]] = {
    "Patient": (
        IndexedColumn("ssin", String(64), lambda e: cast(Patient, e).ssin),
        IndexedColumn("gender", String(32), lambda e: cast(Patient, e).gender),
        IndexedColumn("date_of_birth", Integer(), lambda e: cast(Patient, e).date_of_birth),
        IndexedColumn("search_name", Text(), search_name, indexed=False),
        # Filtered only together with gender and a data owner, which the indexes narrow first (0002).
        IndexedColumn("education", Text(), lambda e: cast(Patient, e).education, indexed=False),
        IndexedColumn("profession", Text(), lambda e: cast(Patient, e).profession, indexed=False),
    ),
    "DataSample": (
        IndexedColumn("patient_id", String(128), lambda e: cast(DataSample, e).patient_id),
        IndexedColumn("value_date", BigInteger(), lambda e: cast(DataSample, e).value_date),
    ),
    "Contact": (),
    "HealthcareElement": (
        IndexedColumn("patient_id", String(128), lambda e: cast(HealthcareElement, e).patient_id),
        IndexedColumn("value_date", BigInteger(), lambda e: cast(HealthcareElement, e).value_date),
    ),
    "HealthcareProfessional": (IndexedColumn("search_name", Text(), search_name, indexed=False),),
    "MedicalDevice": (),
    "Notification": (
        IndexedColumn("type", String(32), lambda e: cast(Notification, e).type),
        IndexedColumn("status", String(32), lambda e: cast(Notification, e).status),
    ),
    "ExchangeData": (
        IndexedColumn("delegator", String(128), lambda e: cast(ExchangeData, e).delegator),
        IndexedColumn("delegate", String(128), lambda e: cast(ExchangeData, e).delegate),
    ),
    "User": (
        IndexedColumn("patient_id", String(128), lambda e: cast(User, e).patient_id),
        IndexedColumn("healthcare_party_id", String(128), lambda e: cast(User, e).healthcare_party_id),
        IndexedColumn("device_id", String(128), lambda e: cast(User, e).device_id),
    ),
}


# Indexes on the columns every entity table has, for the filters that name them (0002).
_COMMON_INDEXES: dict[str, tuple[str, ...]] = {"Notification": ("created",)}


def _entity_table(kind: EntityKind) -> Table:
    columns: list[Any] = [
        Column("id", String(128), primary_key=True),
        Column("rev", String(64), nullable=False),
        Column("document", Text(), nullable=False),
        Column("created", BigInteger(), nullable=False),
        Column("modified", BigInteger(), nullable=False),
        Column("deleted", BigInteger(), nullable=True),
    ]
    for column in KIND_COLUMNS[kind.name]:
        columns.append(Column(column.name, column.type, nullable=True))
        if column.indexed:
            columns.append(Index(f"ix_{kind.plural}_{column.name}", column.name))
    for name in _COMMON_INDEXES.get(kind.name, ()):
        columns.append(Index(f"ix_{kind.plural}_{name}", name))
    if kind.name == "User":
        columns.append(Column("login", String(256), nullable=True, unique=True))
        columns.append(Column("password_hash", Text(), nullable=True))
    return Table(kind.plural, metadata, *columns)


ENTITY_TABLES: dict[str, Table] = {kind.name: _entity_table(kind) for kind in ENTITY_KINDS}

# The term of a blind-index token: its key is the blind-index field, its value the token.
BLIND_INDEX_TERM = "blind_index"

# Set-valued fields, one row per value: term is "label", "code", "identifier", "healthcare_element" or
# "blind_index".
entity_terms = Table(
    "entity_terms",
    metadata,
    Column("entity_type", String(32), primary_key=True),
    Column("entity_id", String(128), primary_key=True),
    Column("term", String(24), primary_key=True),
    Column("key", String(256), primary_key=True),
    Column("value", String(256), primary_key=True),
    # Covering (entity_id last) so that a lookup by value never reads the table, and SQLite's planner, which
    # otherwise prefers scanning the covering primary key by entity_type alone, uses it (0002).
    Index("ix_entity_terms_covering", "entity_type", "term", "key", "value", "entity_id"),
)

# Which data owners may read which entity (access.py has the rule).
entity_readers = Table(
    "entity_readers",
    metadata,
    Column("entity_type", String(32), primary_key=True),
    Column("data_owner_id", String(128), primary_key=True),
    Column("entity_id", String(128), primary_key=True),
    Index("ix_entity_readers_entity", "entity_type", "entity_id"),
)

# The event log. On PostgreSQL `seq` is NULL until a numbering round after the commit gives it (migration 0004).
outbox = Table(
    "outbox",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("seq", BigInteger(), nullable=True, unique=True),
    Column("entity_type", String(32), nullable=False),
    Column("entity_id", String(128), nullable=False),
    Column("rev", String(64), nullable=False),
    Column("event_type", String(8), nullable=False),
    Column("document", Text(), nullable=False),
    Column("readers", Text(), nullable=False),
    Column("created", BigInteger(), nullable=False),
    Index("ix_outbox_created", "created"),
)

# One row: the last assigned `seq`, the log's epoch, and the retention floor (lowest `seq` still kept).
outbox_tail = Table(
    "outbox_tail",
    metadata,
    Column("id", Integer(), primary_key=True),
    Column("last_seq", BigInteger(), nullable=False),
    Column("epoch", String(64), nullable=False),
    Column("floor_seq", BigInteger(), nullable=False),
)

# Secrets every node of one database shares, made by the first migration (e.g. the JWT signing key).
server_keys = Table(
    "server_keys",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text(), nullable=False),
)


def terms_of(entity: Entity) -> Iterator[tuple[str, str, str]]:
    """The (term, key, value) rows an entity contributes to `entity_terms`."""
    for label in entity.labels:
        yield "label", label.type or "", label.code or ""
    for code in entity.codes:
        yield "code", code.type or "", code.code or ""
    for identifier in getattr(entity, "identifiers", ()):
        yield "identifier", identifier.system or "", identifier.value or ""
    for element_id in getattr(entity, "healthcare_element_ids", ()):
        yield "healthcare_element", "", element_id
    for field, tokens in (entity.blind_index or {}).items():
        for token in tokens:
            yield BLIND_INDEX_TERM, field, token
