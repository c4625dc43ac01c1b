"""iCure's JSON shapes, as its clients (cardinal-sdk) send and read them on `/rest/v2` and `/ws/v2`.

Each model has exactly the field set of the cardinal model of the same name, and refuses any other field
(`extra="forbid"`): cardinal's own decoder refuses unknown keys, so what these models serialise is what it
reads. Fields Medstream keeps are typed; those it does not keep are `Any` (`mapping.py` refuses them when they
are not empty). Serialised without nulls: cardinal's non-nullable fields all have defaults or are always set.
A field that cardinal 2.x has and 1.0 lacks is null unless set, so that a response carries it only when it
holds something (1.0's decoder refuses it otherwise).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from medstream.model.base import MAX_STRING_LENGTH


class IcureModel(BaseModel):
    """camelCase on the wire, unknown fields refused, `to_icure()` without nulls."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        extra="forbid",
        str_max_length=MAX_STRING_LENGTH,
        ser_json_inf_nan="null",
        allow_inf_nan=False,
    )

    def to_icure(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def to_icure_json(self) -> bytes:
        return self.__pydantic_serializer__.to_json(self, by_alias=True, exclude_none=True)


# -- value types ---------------------------------------------------------------------------------------------


class CodeStub(IcureModel):
    id: str | None = None
    context: str | None = None
    type: str | None = None
    code: str | None = None
    version: str | None = None
    context_label: str | None = None


class Identifier(IcureModel):
    id: str | None = None
    assigner: str | None = None
    start: str | None = None
    end: str | None = None
    system: str | None = None
    type: CodeStub | None = None
    use: str | None = None
    value: str | None = None


class SecureDelegation(IcureModel):
    delegator: str | None = None
    delegate: str | None = None
    secret_ids: list[str] = Field(default_factory=list)
    encryption_keys: list[str] = Field(default_factory=list)
    owning_entity_ids: list[str] = Field(default_factory=list)
    parent_delegations: list[str] = Field(default_factory=list)
    exchange_data_id: str | None = None
    permissions: Literal["READ", "WRITE"] = "WRITE"


class SecurityMetadata(IcureModel):
    secure_delegations: dict[str, SecureDelegation]


class Delegation(IcureModel):
    owner: str | None = None
    delegated_to: str | None = None
    key: str | None = None
    tags: list[str] = Field(default_factory=list)


class PersonName(IcureModel):
    last_name: str | None = None
    first_names: list[str] = Field(default_factory=list)
    start: int | None = None
    end: int | None = None
    prefix: list[str] = Field(default_factory=list)
    suffix: list[str] = Field(default_factory=list)
    text: str | None = None
    use: str | None = None


class Measure(IcureModel):
    value: float | None = None
    ref: float | None = None
    severity: int | None = None
    severity_code: str | None = None
    evolution: int | None = None
    unit: str | None = None
    unit_codes: list[CodeStub] | None = None
    comment: str | None = None
    comparator: str | None = None
    sign: str | None = None
    reference_ranges: list[Any] = Field(default_factory=list)
    value_with_precision: Any = None


class TimeSeries(IcureModel):
    fields: list[str] = Field(default_factory=list)
    samples: list[list[float]] = Field(default_factory=list)
    min: list[float] = Field(default_factory=list)
    max: list[float] = Field(default_factory=list)
    mean: list[float] = Field(default_factory=list)
    median: list[float] = Field(default_factory=list)
    variance: list[float] = Field(default_factory=list)


class Content(IcureModel):
    string_value: str | None = None
    number_value: float | None = None
    boolean_value: bool | None = None
    instant_value: int | None = None
    fuzzy_date_value: int | None = None
    binary_value: str | None = None
    document_id: str | None = None
    measure_value: Measure | None = None
    medication_value: Any = None
    time_series: TimeSeries | None = None
    compound_value: list[Service] | None = None
    ratio: list[Measure] | None = None
    range: list[Measure] | None = None


# -- entities ------------------------------------------------------------------------------------------------


class Service(IcureModel):
    """EncryptedService: one observation inside a contact (a Medstream DataSample)."""

    id: str
    transaction_id: str | None = None
    identifier: list[Identifier] = Field(default_factory=list)
    contact_id: str | None = None
    sub_contact_ids: list[str] | None = None
    plans_of_action_ids: list[str] | None = None
    health_elements_ids: list[str] | None = None
    form_ids: list[str] | None = None
    secret_foreign_keys: list[str] | None = None
    crypted_foreign_keys: dict[str, list[Delegation]] = Field(default_factory=dict)
    delegations: dict[str, list[Delegation]] = Field(default_factory=dict)
    encryption_keys: dict[str, list[Delegation]] = Field(default_factory=dict)
    label: str | None = None
    index: int | None = None
    content: dict[str, Content] = Field(default_factory=dict)
    text_indexes: dict[str, str] = Field(default_factory=dict)
    value_date: int | None = None
    opening_date: int | None = None
    closing_date: int | None = None
    created: int | None = None
    modified: int | None = None
    end_of_life: int | None = None
    author: str | None = None
    responsible: str | None = None
    comment: str | None = None
    invoicing_codes: list[str] = Field(default_factory=list)
    notes: list[Any] = Field(default_factory=list)
    qualified_links: dict[str, dict[str, str]] = Field(default_factory=dict)
    codes: list[CodeStub] = Field(default_factory=list)
    tags: list[CodeStub] = Field(default_factory=list)
    encrypted_self: str | None = None
    security_metadata: SecurityMetadata | None = None


class Contact(IcureModel):
    """EncryptedContact: an encounter and the services observed in it."""

    id: str
    rev: str | None = None
    created: int | None = None
    modified: int | None = None
    author: str | None = None
    responsible: str | None = None
    tags: list[CodeStub] = Field(default_factory=list)
    codes: list[CodeStub] = Field(default_factory=list)
    identifier: list[Identifier] = Field(default_factory=list)
    end_of_life: int | None = None
    deletion_date: int | None = None
    group_id: str | None = None
    opening_date: int | None = None
    closing_date: int | None = None
    descr: str | None = None
    location: str | None = None
    encounter_type: CodeStub | None = None
    encounter_location: Any = None
    sub_contacts: list[Any] = Field(default_factory=list)
    services: list[Service] = Field(default_factory=list)
    participant_list: list[Any] | None = None  # cardinal 2.x only: unset, so that 1.0 reads the contact
    secret_foreign_keys: list[str] = Field(default_factory=list)
    crypted_foreign_keys: dict[str, list[Delegation]] = Field(default_factory=dict)
    delegations: dict[str, list[Delegation]] = Field(default_factory=dict)
    encryption_keys: dict[str, list[Delegation]] = Field(default_factory=dict)
    encrypted_self: str | None = None
    security_metadata: SecurityMetadata | None = None
    notes: list[Any] = Field(default_factory=list)


class HealthElement(IcureModel):
    """EncryptedHealthElement: a lasting condition of a patient (a Medstream HealthcareElement)."""

    id: str
    identifiers: list[Identifier] = Field(default_factory=list)
    rev: str | None = None
    created: int | None = None
    modified: int | None = None
    author: str | None = None
    responsible: str | None = None
    tags: list[CodeStub] = Field(default_factory=list)
    codes: list[CodeStub] = Field(default_factory=list)
    end_of_life: int | None = None
    deletion_date: int | None = None
    health_element_id: str | None = None
    value_date: int | None = None
    opening_date: int | None = None
    closing_date: int | None = None
    descr: str | None = None
    note: str | None = None
    notes: list[Any] = Field(default_factory=list)
    relevant: bool = True
    id_opening_contact: str | None = None
    id_closing_contact: str | None = None
    id_service: str | None = None
    laterality: Any = None
    plans_of_action: list[Any] = Field(default_factory=list)
    episodes: list[Any] = Field(default_factory=list)
    care_team: list[Any] = Field(default_factory=list)
    # Fields of cardinal 2.14's model that other versions lack: unset (refused when not empty), so that a
    # response leaves them out.
    qualified_links: list[Any] | None = None
    asserters: list[Any] | None = None
    secret_foreign_keys: list[str] = Field(default_factory=list)
    crypted_foreign_keys: dict[str, list[Delegation]] = Field(default_factory=dict)
    delegations: dict[str, list[Delegation]] = Field(default_factory=dict)
    encryption_keys: dict[str, list[Delegation]] = Field(default_factory=dict)
    encrypted_self: str | None = None
    security_metadata: SecurityMetadata | None = None


class Patient(IcureModel):
    """EncryptedPatient."""

    id: str
    identifier: list[Identifier] = Field(default_factory=list)
    rev: str | None = None
    created: int | None = None
    modified: int | None = None
    author: str | None = None
    responsible: str | None = None
    tags: list[CodeStub] = Field(default_factory=list)
    codes: list[CodeStub] = Field(default_factory=list)
    deletion_date: int | None = None
    first_name: str | None = None
    last_name: str | None = None
    names: list[PersonName] = Field(default_factory=list)
    company_name: str | None = None
    languages: list[str] = Field(default_factory=list)
    addresses: list[Any] = Field(default_factory=list)
    civility: str | None = None
    gender: str | None = None
    birth_sex: str | None = None
    merge_to_patient_id: str | None = None
    merged_ids: list[str] = Field(default_factory=list)
    alias: str | None = None
    active: bool = True
    deactivation_reason: str = "none"
    deactivation_date: int | None = None
    ssin: str | None = None
    maiden_name: str | None = None
    spouse_name: str | None = None
    partner_name: str | None = None
    personal_status: str | None = None
    date_of_birth: int | None = None
    date_of_death: int | None = None
    timestamp_of_latest_eid_reading: int | None = None
    place_of_birth: str | None = None
    place_of_death: str | None = None
    deceased: bool | None = None
    education: str | None = None
    profession: str | None = None
    notes: list[Any] = Field(default_factory=list)
    note: str | None = None
    administrative_note: str | None = None
    nationality: str | None = None
    race: str | None = None
    ethnicity: str | None = None
    insurabilities: list[Any] = Field(default_factory=list)
    partnerships: list[Any] = Field(default_factory=list)
    patient_health_care_parties: list[Any] = Field(default_factory=list)
    financial_institution_information: list[Any] = Field(default_factory=list)
    medical_house_contracts: list[Any] = Field(default_factory=list)
    patient_professions: list[CodeStub] = Field(default_factory=list)
    parameters: dict[str, list[str]] = Field(default_factory=dict)
    properties: list[Any] = Field(default_factory=list)
    hc_party_keys: dict[str, list[str]] = Field(default_factory=dict)
    aes_exchange_keys: dict[str, Any] = Field(default_factory=dict)
    transfer_keys: dict[str, Any] = Field(default_factory=dict)
    private_key_shamir_partitions: dict[str, str] = Field(default_factory=dict)
    public_key: str | None = None
    public_keys_for_oaep_with_sha256: list[str] = Field(default_factory=list)
    secret_foreign_keys: list[str] = Field(default_factory=list)
    crypted_foreign_keys: dict[str, list[Delegation]] = Field(default_factory=dict)
    delegations: dict[str, list[Delegation]] = Field(default_factory=dict)
    encryption_keys: dict[str, list[Delegation]] = Field(default_factory=dict)
    encrypted_self: str | None = None
    security_metadata: SecurityMetadata | None = None
    crypto_actor_properties: list[Any] | None = None
    parent_id: str | None = None


class HealthcareParty(IcureModel):
    """HealthcareParty: a Medstream HealthcareProfessional, as v2 shows it."""

    id: str
    rev: str | None = None
    created: int | None = None
    modified: int | None = None
    deletion_date: int | None = None
    identifier: list[Identifier] = Field(default_factory=list)
    tags: list[CodeStub] = Field(default_factory=list)
    codes: list[CodeStub] = Field(default_factory=list)
    name: str | None = None
    last_name: str | None = None
    first_name: str | None = None
    names: list[PersonName] = Field(default_factory=list)
    gender: str | None = None
    civility: str | None = None
    company_name: str | None = None
    speciality: str | None = None
    bank_account: str | None = None
    bic: str | None = None
    proxy_bank_account: str | None = None
    proxy_bic: str | None = None
    invoice_header: str | None = None
    parent_id: str | None = None
    ssin: str | None = None
    addresses: list[Any] = Field(default_factory=list)
    languages: list[str] = Field(default_factory=list)
    speciality_codes: list[CodeStub] = Field(default_factory=list)
    notes: str | None = None
    financial_institution_information: list[Any] = Field(default_factory=list)
    descr: dict[str, str] | None = None
    properties: list[Any] = Field(default_factory=list)
    public: bool | None = None
    public_properties: list[Any] | None = None
    crypto_actor_properties: list[Any] | None = None
    hc_party_keys: dict[str, list[str]] = Field(default_factory=dict)
    aes_exchange_keys: dict[str, dict[str, dict[str, str]]] = Field(default_factory=dict)
    transfer_keys: dict[str, dict[str, str]] = Field(default_factory=dict)
    private_key_shamir_partitions: dict[str, str] = Field(default_factory=dict)
    public_key: str | None = None
    public_keys_for_oaep_with_sha256: list[str] = Field(default_factory=list)


class CryptoActorStub(IcureModel):
    """The key fields of a data owner, which `PUT /rest/v2/dataowner/stub` changes."""

    id: str
    rev: str
    hc_party_keys: dict[str, list[str]] = Field(default_factory=dict)
    aes_exchange_keys: dict[str, dict[str, dict[str, str]]] = Field(default_factory=dict)
    transfer_keys: dict[str, dict[str, str]] = Field(default_factory=dict)
    private_key_shamir_partitions: dict[str, str] = Field(default_factory=dict)
    public_key: str | None = None
    public_keys_for_oaep_with_sha256: list[str] = Field(default_factory=list)
    parent_id: str | None = None
    crypto_actor_properties: list[Any] | None = None


DataOwnerType = Literal["hcp", "patient", "device"]


class CryptoActorStubWithType(IcureModel):
    type: DataOwnerType
    stub: CryptoActorStub


class HcpDataOwner(IcureModel):
    """DataOwnerWithType for a healthcare party (`type` is its discriminator)."""

    type: Literal["hcp"] = "hcp"
    data_owner: HealthcareParty


class ExchangeData(IcureModel):
    id: str
    rev: str | None = None
    delegator: str
    delegate: str
    exchange_key: dict[str, str]
    access_control_secret: dict[str, str]
    delegator_signature: dict[str, str] = Field(default_factory=dict)
    shared_signature_key: dict[str, str]
    shared_signature: str
    deletion_date: int | None = None


class User(IcureModel):
    id: str
    rev: str | None = None
    deletion_date: int | None = None
    created: int | None = None
    identifier: list[Identifier] = Field(default_factory=list)
    name: str | None = None
    properties: list[Any] = Field(default_factory=list)
    permissions: list[Any] = Field(default_factory=list)
    roles: list[str] = Field(default_factory=list)
    status: Literal["ACTIVE", "DISABLED", "REGISTERING"] | None = None
    login: str | None = None
    password_hash: str | None = None
    group_id: str | None = None
    healthcare_party_id: str | None = None
    patient_id: str | None = None
    device_id: str | None = None
    auto_delegations: dict[str, list[str]] = Field(default_factory=dict)
    terms_of_use_date: Any = None
    email: str | None = None
    mobile_phone: str | None = None
    authentication_tokens: dict[str, Any] = Field(default_factory=dict)
    system_metadata: Any = None


class DocIdentifier(IcureModel):
    """What a delete answers: the entity's id and its new rev."""

    id: str
    rev: str | None = None


class ListOfIds(IcureModel):
    """cardinal leaves out an empty list (`{}`)."""

    ids: list[str] = Field(default_factory=list, max_length=10_000)


# -- sharing ---------------------------------------------------------------------------------------------------


class EntityShareRequest(IcureModel):
    """A new secure delegation from the logged data owner (`explicitDelegator`) to `explicitDelegate`, under the
    key that hashes each access control key, holding what the delegator encrypted for the delegate."""

    explicit_delegator: str | None = Field(None, max_length=128)
    explicit_delegate: str | None = Field(None, max_length=128)
    access_control_keys: list[str] = Field(max_length=100)
    secret_ids: list[str] = Field(default_factory=list, max_length=1000)
    encryption_keys: list[str] = Field(default_factory=list, max_length=1000)
    owning_entity_ids: list[str] = Field(default_factory=list, max_length=1000)
    exchange_data_id: str | None = Field(None, max_length=128)
    encrypted_exchange_data_id: dict[str, str] = Field(default_factory=dict, max_length=100)
    requested_permissions: Literal["MAX_READ", "FULL_READ", "MAX_WRITE", "FULL_WRITE", "ROOT"] = "MAX_WRITE"


class EntitySharedMetadataUpdateRequest(IcureModel):
    """Entries added to (CREATE) or removed from (DELETE) an existing secure delegation, named by its key."""

    metadata_access_control_hash: str = Field(max_length=128)
    secret_ids: dict[str, Literal["CREATE", "DELETE"]] = Field(default_factory=dict, max_length=1000)
    encryption_keys: dict[str, Literal["CREATE", "DELETE"]] = Field(default_factory=dict, max_length=1000)
    owning_entity_ids: dict[str, Literal["CREATE", "DELETE"]] = Field(default_factory=dict, max_length=1000)


class EntityShareOrMetadataUpdateRequest(IcureModel):
    share: EntityShareRequest | None = None
    update: EntitySharedMetadataUpdateRequest | None = None


class EntityRequestInformation(IcureModel):
    requests: dict[str, EntityShareOrMetadataUpdateRequest] = Field(max_length=100)
    potential_parent_delegations: list[str] = Field(default_factory=list, max_length=1000)


class BulkShareOrUpdateMetadataParams(IcureModel):
    """`PUT /rest/v2/{patient,contact,helement}/bulkSharedMetadataUpdate`: requests by entity id."""

    requests_by_entity_id: dict[str, EntityRequestInformation] = Field(max_length=1000)


class RejectedShareOrMetadataUpdateRequest(IcureModel):
    code: int
    should_retry: bool = False
    reason: str


class EntityBulkShareResult(IcureModel):
    """One entity's outcome: the entity as written if a request succeeded, the rev it had, the refused requests."""

    updated_entity: Any = None
    entity_id: str
    entity_rev: str | None = None
    rejected_requests: dict[str, RejectedShareOrMetadataUpdateRequest] = Field(default_factory=dict)


# -- authentication ------------------------------------------------------------------------------------------


class LoginCredentials(IcureModel):
    username: str | None = Field(None, max_length=256)
    password: str | None = Field(None, max_length=1024)


class JwtResponse(IcureModel):
    token: str | None = None
    refresh_token: str | None = None
    successful: bool = False


class UserGroup(IcureModel):
    """A group a login may enter, as `GET /rest/v2/user/matches` lists them."""

    group_id: str | None = None
    group_name: str | None = None
    groups_hierarchy: list[Any] = Field(default_factory=list)
    user_id: str | None = None
    login: str | None = None
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    patient_id: str | None = None
    healthcare_party_id: str | None = None
    device_id: str | None = None
    name_of_parent_of_topmost_group_in_hierarchy: str | None = None


# -- the websocket ---------------------------------------------------------------------------------------------


class FilterChain(IcureModel):
    """A filter and an optional predicate; Medstream evaluates filters only (`predicate` must be null)."""

    filter: dict[str, Any]
    predicate: dict[str, Any] | None = None


class Subscription(IcureModel):
    """The one text frame a client sends on `/ws/v2/notification/subscribe` (after each reconnect)."""

    event_types: list[Literal["CREATE", "UPDATE", "DELETE"]] = Field(min_length=1, max_length=3)
    entity_class: str = Field(max_length=256)
    filter: FilterChain | None = None
    access_control_keys: list[str] | None = Field(None, max_length=1000)
    use_cardinal_model_serialization: bool | None = None
    cardinal_sdk_version: str | None = Field(None, max_length=64)


Content.model_rebuild()
