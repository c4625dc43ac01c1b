"""Value types shared by several entities, and the fields every stored entity has."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import ConfigDict, Field, PlainSerializer, field_validator

from medstream.model.base import MedstreamModel
from medstream.model.blind_index import check_blind_index
from medstream.model.scalars import Base64Text as Base64Text
from medstream.model.scalars import EncryptedSelfText
from medstream.model.scalars import Int64 as Int64
from medstream.model.security import Delegation, SecurityMetadata

# An entity id travels in URL paths: a UUID by default, any short URL-safe token when the client supplies one.
EntityId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")]


class CodingReference(MedstreamModel):
    """A code from a terminology (`type` is the code system, e.g. LOINC), used for labels and codes."""

    model_config = ConfigDict(frozen=True)

    id: str | None = None
    type: str | None = None
    code: str | None = None
    version: str | None = None


def _coding_order(c: CodingReference) -> tuple[bool, str, bool, str, bool, str, bool, str]:
    # Every field is in the key (absent before empty) so that no two distinct codings tie: a tie would keep
    # the set's iteration order, which depends on insertion order.
    return (
        c.type is not None, c.type or "", c.code is not None, c.code or "",
        c.version is not None, c.version or "", c.id is not None, c.id or "",
    )  # fmt: skip


def _sorted_codings(codings: set[CodingReference]) -> list[CodingReference]:
    # The codings themselves, in order: pydantic's serializer writes each one as it writes any model, without
    # a call back into Python per coding (building their dicts here was half of a data sample's JSON). Most
    # sets are empty or hold one coding (every entity has two sets): those need no sort.
    if len(codings) <= 1:
        return list(codings)
    return sorted(codings, key=_coding_order)


# A set of codings; serialised as a list in a stable order so that equal sets give equal JSON.
CodingSet = Annotated[set[CodingReference], PlainSerializer(_sorted_codings, return_type=list[CodingReference])]


# A set of strings (ids, roles); serialised sorted for the same reason.
StringSet = Annotated[set[str], PlainSerializer(sorted, return_type=list[str])]


# A date and time as iCure writes it: the integer YYYYMMDDhhmmss (20240131143000), or YYYYMMDD for a date.
FuzzyDateTime = Int64


class Identifier(MedstreamModel):
    id: str | None = None
    assigner: str | None = None
    start: str | None = None
    end: str | None = None
    system: str | None = None
    type: CodingReference | None = None
    use: str | None = None
    value: str | None = None


class PersonNameUse(StrEnum):
    usual = "usual"
    official = "official"
    temp = "temp"
    nickname = "nickname"
    anonymous = "anonymous"
    maiden = "maiden"
    old = "old"
    other = "other"


class PersonName(MedstreamModel):
    last_name: str | None = None
    first_names: list[str] = Field(default_factory=list)
    start: Int64 | None = None
    end: Int64 | None = None
    prefix: list[str] = Field(default_factory=list)
    suffix: list[str] = Field(default_factory=list)
    text: str | None = None
    use: PersonNameUse | None = None


class TelecomType(StrEnum):
    mobile = "mobile"
    phone = "phone"
    email = "email"
    fax = "fax"
    skype = "skype"
    im = "im"
    medibridge = "medibridge"
    ehealthbox = "ehealthbox"
    apicrypt = "apicrypt"
    web = "web"
    print = "print"
    disk = "disk"
    other = "other"
    pager = "pager"


class Telecom(MedstreamModel):
    telecom_type: TelecomType | None = None
    telecom_number: str | None = None
    telecom_description: str | None = None


class AddressType(StrEnum):
    home = "home"
    work = "work"
    vacation = "vacation"
    hospital = "hospital"
    clinic = "clinic"
    hq = "hq"
    other = "other"
    temporary = "temporary"
    postal = "postal"
    diplomatic = "diplomatic"
    reference = "reference"
    careaddress = "careaddress"


class Address(MedstreamModel):
    address_type: AddressType | None = None
    description: str | None = None
    street: str | None = None
    house_number: str | None = None
    postbox_number: str | None = None
    postal_code: str | None = None
    city: str | None = None
    state: str | None = None
    country: str | None = None
    note: str | None = None
    telecoms: list[Telecom] = Field(default_factory=list)


class PropertyTypeType(StrEnum):
    BOOLEAN = "BOOLEAN"
    INTEGER = "INTEGER"
    DOUBLE = "DOUBLE"
    STRING = "STRING"
    DATE = "DATE"
    CLOB = "CLOB"
    JSON = "JSON"


class PropertyType(MedstreamModel):
    identifier: str | None = None
    type: PropertyTypeType | None = None


class TypedValue(MedstreamModel):
    type: PropertyTypeType | None = None
    boolean_value: bool | None = None
    integer_value: Int64 | None = None
    double_value: float | None = None
    string_value: str | None = None
    date_value: Int64 | None = None


class Property(MedstreamModel):
    id: str | None = None
    type: PropertyType | None = None
    typed_value: TypedValue | None = None
    deleted: Int64 | None = None


class Entity(MedstreamModel):
    """The fields of every stored entity. The server owns `created`, `modified`, `author` and `deletion_date`:
    what a client sends for them is replaced by the stored values, so an entity read from the server can be sent
    back as it is. `security_metadata` says who reads the entity (its delegations, checked by the server's
    write rules) and `encrypted_self` holds its encrypted fields, which the server stores as given.
    `blind_index` holds, by blind-indexed field, the tokens that let the server find the entity by the value of
    a field that travels encrypted, without learning it (`blind_index.py`)."""

    entity_type: ClassVar[str]

    id: EntityId | None = None
    rev: str | None = None
    created: Int64 | None = None
    modified: Int64 | None = None
    author: str | None = None
    responsible: str | None = None
    labels: CodingSet = Field(default_factory=set)
    codes: CodingSet = Field(default_factory=set)
    deletion_date: Int64 | None = None
    security_metadata: SecurityMetadata | None = None
    encrypted_self: EncryptedSelfText | None = None
    blind_index: dict[str, list[str]] | None = None

    # A validator of the field, not of the model: it runs only for an entity that carries a blind index, where
    # a model's validator ran, a Python call, for every entity validated (every write's body, every event).
    @field_validator("blind_index")
    @classmethod
    def _check_blind_index(cls, blind_index: dict[str, list[str]] | None) -> dict[str, list[str]] | None:
        if blind_index:
            check_blind_index(cls.entity_type, blind_index)
        return blind_index

    def to_write_dict(self) -> dict[str, Any]:
        """The form sent to the server when writing."""
        return self.to_json_dict()

    @property
    def is_deleted(self) -> bool:
        return self.deletion_date is not None

    @property
    def readers(self) -> frozenset[str]:
        """The data owners this entity is shared with: the delegates of its secure delegations."""
        if self.security_metadata is None:
            return frozenset()
        return self.security_metadata.readers


# Legacy delegations by data owner id (`Delegation`).
Delegations = dict[str, list[Delegation]]


class SecretLinks(MedstreamModel):
    """The fields with which iCure's clients (cardinal) link an entity to its patient without naming it: the
    patient's secret ids (`secretForeignKeys`) and the legacy delegation maps. The server stores them as given and
    never reads them: access follows `securityMetadata`. Absent unless a client sent them."""

    secret_foreign_keys: StringSet | None = None
    crypted_foreign_keys: Delegations | None = None
    delegations: Delegations | None = None
    encryption_keys: Delegations | None = None


class CryptoActorKeys(MedstreamModel):
    """The public key fields iCure's clients (cardinal) publish on their data owner, stored as given beside the
    data owner's `cryptoKeys`: RSA-OAEP-SHA256 public keys as hex SPKI, and the legacy key maps. Only the data
    owner itself changes them, and a published OAEP key is never removed (`delegations.check_actor_keys`).
    Absent unless a client sent them."""

    public_keys_for_oaep_with_sha256: StringSet | None = None
    public_key: str | None = None
    hc_party_keys: dict[str, list[str]] | None = None
    aes_exchange_keys: dict[str, dict[str, dict[str, str]]] | None = None
    transfer_keys: dict[str, dict[str, str]] | None = None
    private_key_shamir_partitions: dict[str, str] | None = None
