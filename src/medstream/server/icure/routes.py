"""The `/rest/v2` calls iCure's clients (cardinal-sdk) make, over Medstream's own store, access rule and outbox
(docs/icure.md lists them). Each maps iCure's JSON to Medstream's entities and back (`medstream.icure.mapping`);
a write is an ordinary Medstream write, with its events.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from medstream.access import Actor
from medstream.errors import (
    AuthenticationError,
    ConflictError,
    ForbiddenError,
    MedstreamError,
    NotFoundError,
    ValidationError,
)
from medstream.filters.fields import refuse_encrypted_fields
from medstream.filters.nodes import ExchangeDataByDelegateFilter, ExchangeDataByDelegatorFilter
from medstream.filters.tree import IntersectionFilter, UnionFilter
from medstream.icure import mapping
from medstream.icure import shapes as ic
from medstream.icure.encryption import refuse_clear_fields
from medstream.icure.filters import medstream_filter
from medstream.icure.sharing import apply_requests, rejected_all
from medstream.model.common import Entity
from medstream.model.contact import Contact
from medstream.model.data_sample import DataSample
from medstream.model.entities import KIND_BY_NAME, EntityKind
from medstream.model.exchange_data import ExchangeData
from medstream.model.healthcare_element import HealthcareElement
from medstream.model.healthcare_professional import HealthcareProfessional
from medstream.model.patient import Patient
from medstream.server.icure.errors import icure_endpoint, not_served
from medstream.server.routes.auth import LoginCredentials, open_session
from medstream.server.routes.queries import matching_ids
from medstream.server.state import ServerState, current_actor, state_of
from medstream.store.queries import filter_entities
from medstream.store.repository import Stored

M = TypeVar("M", bound=BaseModel)

PATIENTS = KIND_BY_NAME["Patient"]
DATA_SAMPLES = KIND_BY_NAME["DataSample"]
CONTACTS = KIND_BY_NAME["Contact"]
PROFESSIONALS = KIND_BY_NAME["HealthcareProfessional"]
EXCHANGE_DATA = KIND_BY_NAME["ExchangeData"]
HEALTH_ELEMENTS = KIND_BY_NAME["HealthcareElement"]
# The most exchange data records one byDelegatorDelegate call answers (a pair has one or a few), and the largest
# page of byParticipant (its default, as iCure's).
MAX_EXCHANGE_DATA = 1000


def _json(model: ic.IcureModel) -> Response:
    return Response(model.to_icure_json(), media_type="application/json")


def _json_list(models: Sequence[ic.IcureModel]) -> Response:
    return Response(b"[" + b",".join(m.to_icure_json() for m in models) + b"]", media_type="application/json")


async def _body(request: Request, model: type[M]) -> M:
    raw = await request.body()
    if not raw:
        raise ValidationError(f"the request needs a JSON body ({model.__name__})")
    return model.model_validate_json(raw)


def _path(request: Request, name: str) -> str:
    value = str(request.path_params[name])
    if not value or len(value) > 128:
        raise ValidationError(f"{name}: an id of 1 to 128 characters")
    return value


async def _write(state: ServerState, kind: EntityKind, entities: Sequence[Entity], actor: Actor) -> list[Stored]:
    """A write as `/rest/v1` makes it: on a server that requires encryption, Medstream's encrypted fields are
    refused in clear too, named as iCure names them (docs/icure.md, "On a server that requires encryption")."""
    if state.settings.require_encryption:
        refuse_clear_fields(entities)
    return await state.repository.create_or_modify_stored(kind, entities, actor)


# -- authentication --------------------------------------------------------------------------------------------


async def login(request: Request) -> Response:
    """`POST /rest/v2/auth/login`: a session's tokens, with iCure's claims (`tac`, `jwtD`)."""
    _check_group(request.query_params.get("groupId"))
    credentials = await _body(request, ic.LoginCredentials)
    if not credentials.username or not credentials.password:
        raise ValidationError("username and password are required")
    state = state_of(request)
    checked = LoginCredentials(username=credentials.username, password=credentials.password)
    pair = await open_session(state, checked, request.client.host if request.client else "")
    return _json(ic.JwtResponse(token=pair.token, refresh_token=pair.refresh_token, successful=True))


def _check_group(group_id: str | None) -> None:
    """Medstream's one group (`mapping.GROUP_ID`), or none, may be asked for; any other is refused."""
    if group_id and group_id != mapping.GROUP_ID:
        raise NotFoundError(f"no group {group_id!r}: Medstream has one group, {mapping.GROUP_ID!r}")


async def _refreshed(request: Request) -> tuple[str, str]:
    """The session's refresh token (header `Refresh-Token`), checked, and a new access token of that session.
    iCure's clients keep their refresh token until it expires, so it is checked (not ended, not replaced by a
    `/rest/v1` refresh) but not rotated."""
    token = request.headers.get("refresh-token")
    if not token:
        raise AuthenticationError("missing Refresh-Token header")
    state = state_of(request)
    claims = state.tokens.decode(token, expected_type="refresh")
    family, jti = claims.get("fam"), claims.get("jti")
    if not isinstance(family, str) or not isinstance(jti, str):
        raise AuthenticationError("this refresh token was revoked: log in again")
    user = await state.repository.find_user(str(claims["sub"]))
    if user is None:
        raise AuthenticationError("the user of this refresh token no longer exists")
    generation = int(claims.get("gen") or 0)
    await state.sessions.check_standing(family, str(user.id), generation, jti, int(time.time()))
    pair = state.tokens.issue(user, generation=generation, family=family)
    return token, pair.token


async def refresh(request: Request) -> Response:
    """`POST /rest/v2/auth/refresh` (header `Refresh-Token`): a new access token."""
    _, access = await _refreshed(request)
    return _json(ic.JwtResponse(token=access, successful=True))


async def switch_group(request: Request) -> Response:
    """`POST /rest/v2/auth/switch/{groupId}` (header `Refresh-Token`): entering Medstream's one group keeps the
    session, with a new access token and the same refresh token; another group id is a 404."""
    _check_group(_path(request, "groupId"))
    refresh_token, access = await _refreshed(request)
    return _json(ic.JwtResponse(token=access, refresh_token=refresh_token, successful=True))


async def user_matches(request: Request) -> Response:
    """`GET /rest/v2/user/matches`: the groups the user may enter, Medstream's one group. (cardinal 1.0 needs a
    group here; 2.x also reads a 404 as "no groups".)"""
    actor = await current_actor(state_of(request), request)
    user = await state_of(request).repository.find_user(actor.user_id)
    if user is None:
        raise AuthenticationError("the user of this token no longer exists")
    return _json_list([mapping.user_group_out(user)])


async def current_user(request: Request) -> Response:
    actor = await current_actor(state_of(request), request)
    user = await state_of(request).repository.find_user(actor.user_id)
    if user is None:
        raise AuthenticationError("the user of this token no longer exists")
    return _json(mapping.user_out(user))


# -- data owners -----------------------------------------------------------------------------------------------


async def _own_professional(request: Request) -> tuple[Actor, HealthcareProfessional]:
    actor = await current_actor(state_of(request), request)
    if actor.data_owner_id is None:
        raise NotFoundError("this user acts as no data owner")
    state = state_of(request)
    found = await state.repository.published_keys(actor.data_owner_id)
    if found is None or found[0] != PROFESSIONALS.name:
        raise NotFoundError("the v2 API serves the users of healthcare professionals only (docs/icure.md)")
    hcp = await state.repository.get(PROFESSIONALS, actor.data_owner_id, actor)
    assert isinstance(hcp, HealthcareProfessional)
    return actor, hcp


async def _published_professional(request: Request, data_owner_id: str) -> HealthcareProfessional:
    """Any professional as data owner, whoever asks: what v2 shows of it is public (keys, names)."""
    await current_actor(state_of(request), request)
    found = await state_of(request).repository.published_keys(data_owner_id)
    if found is None or found[0] != PROFESSIONALS.name:
        raise NotFoundError(f"no healthcare party with id {data_owner_id}")
    hcp = found[1]
    assert isinstance(hcp, HealthcareProfessional)
    return hcp


async def current_data_owner(request: Request) -> Response:
    _, hcp = await _own_professional(request)
    return _json(ic.HcpDataOwner(data_owner=mapping.healthcare_party_out(hcp)))


async def data_owner(request: Request) -> Response:
    hcp = await _published_professional(request, _path(request, "id"))
    return _json(ic.HcpDataOwner(data_owner=mapping.healthcare_party_out(hcp)))


async def data_owner_stub(request: Request) -> Response:
    hcp = await _published_professional(request, _path(request, "id"))
    return _json(ic.CryptoActorStubWithType(type="hcp", stub=mapping.stub_out(hcp)))


async def modify_stub(request: Request) -> Response:
    """`PUT /rest/v2/dataowner/stub`: publish the data owner's keys, with a rev check (a stale rev is a 409)."""
    actor, hcp = await _own_professional(request)
    sent = await _body(request, ic.CryptoActorStubWithType)
    if sent.type != "hcp" or sent.stub.id != hcp.id:
        raise ForbiddenError("a user changes the keys of its own data owner only")
    stored = await _write(state_of(request), PROFESSIONALS, [mapping.stub_in(sent.stub, hcp)], actor)
    written = stored[0].entity
    assert isinstance(written, HealthcareProfessional)
    return _json(ic.CryptoActorStubWithType(type="hcp", stub=mapping.stub_out(written)))


async def aes_exchange_keys(request: Request) -> Response:
    """`GET /rest/v2/{hcparty,patient,device}/{delegateId}/aesExchangeKeys`: the legacy AES exchange keys that
    professionals, patients or devices made for the delegate. Medstream keeps no such keys towards a delegate
    (clients of today share keys through exchange data): always `{}`, as iCure answers a delegate without any.
    (A 404 there, which cardinal tolerates, made its start-up stall about one time in three.)"""
    await current_actor(state_of(request), request)
    _path(request, "id")
    return Response(b"{}", media_type="application/json")


# -- exchange data ---------------------------------------------------------------------------------------------


async def exchange_data_by_pair(request: Request) -> Response:
    actor = await current_actor(state_of(request), request)
    delegator, delegate = _path(request, "delegator"), _path(request, "delegate")
    selector = IntersectionFilter(
        filters=[
            ExchangeDataByDelegatorFilter(delegator_id=delegator),
            ExchangeDataByDelegateFilter(delegate_id=delegate),
        ]
    )
    rows = await filter_entities(state_of(request).database, EXCHANGE_DATA, selector, actor, limit=MAX_EXCHANGE_DATA)
    records = [r for r in rows if isinstance(r, ExchangeData) and mapping.is_icure_exchange_data(r)]
    return _json_list([mapping.exchange_data_out(r) for r in records])


def _limit(request: Request, default: int, most: int) -> int:
    text = request.query_params.get("limit")
    if text is None:
        return default
    if not text.isdigit() or not 1 <= int(text) <= most:
        raise ValidationError(f"limit: a whole number from 1 to {most}, not {text!r}")
    return int(text)


async def exchange_data_by_participant(request: Request) -> Response:
    """`GET /rest/v2/exchangedata/byParticipant/{dataOwnerId}?startDocumentId=&limit=`: the exchange data the data
    owner is the delegator or the delegate of, and you a party to, by id, in iCure's `PaginatedList` (`rows`,
    `nextKeyPair.startKeyDocId`: the first id of the next page, sent back as `startDocumentId`)."""
    actor = await current_actor(state_of(request), request)
    participant = _path(request, "dataOwnerId")
    limit = _limit(request, MAX_EXCHANGE_DATA, MAX_EXCHANGE_DATA)
    start = request.query_params.get("startDocumentId") or None
    selector = UnionFilter(
        filters=[
            ExchangeDataByDelegatorFilter(delegator_id=participant),
            ExchangeDataByDelegateFilter(delegate_id=participant),
        ]
    )
    database = state_of(request).database
    rows = await filter_entities(database, EXCHANGE_DATA, selector, actor, start_at=start, limit=limit)
    next_key = b"null"
    if len(rows) == limit:
        after = await filter_entities(database, EXCHANGE_DATA, selector, actor, start_after=rows[-1].id, limit=1)
        if after:
            next_key = orjson.dumps({"startKeyDocId": after[0].id})
    records = [r for r in rows if isinstance(r, ExchangeData) and mapping.is_icure_exchange_data(r)]
    body = b",".join(mapping.exchange_data_out(r).to_icure_json() for r in records)
    return Response(b'{"rows":[' + body + b'],"nextKeyPair":' + next_key + b"}", media_type="application/json")


async def exchange_data(request: Request) -> Response:
    actor = await current_actor(state_of(request), request)
    record = await state_of(request).repository.get(EXCHANGE_DATA, _path(request, "id"), actor)
    assert isinstance(record, ExchangeData)
    if not mapping.is_icure_exchange_data(record):
        raise NotFoundError(f"no exchange data with id {record.id} made by an iCure client")
    return _json(mapping.exchange_data_out(record))


async def exchange_data_by_ids(request: Request) -> Response:
    """`POST /rest/v2/exchangedata/byIds` (`{"ids": [...]}`): those records you are a party to, in the order
    asked; others are left out."""
    actor = await current_actor(state_of(request), request)
    ids = (await _body(request, ic.ListOfIds)).ids
    found = await state_of(request).repository.get_many(EXCHANGE_DATA, ids, actor)
    records = [r for r in found if isinstance(r, ExchangeData) and mapping.is_icure_exchange_data(r)]
    return _json_list([mapping.exchange_data_out(r) for r in records])


async def write_exchange_data(request: Request) -> Response:
    """`POST` (create) and `PUT` (modify, with its rev) `/rest/v2/exchangedata`."""
    actor = await current_actor(state_of(request), request)
    sent = await _body(request, ic.ExchangeData)
    if request.method == "POST" and sent.rev is not None:
        raise ValidationError("a new exchange data record has no rev (PUT modifies one)")
    if request.method == "PUT" and sent.rev is None:
        raise ValidationError("send the record's rev to modify it")
    stored = await _write(state_of(request), EXCHANGE_DATA, [mapping.exchange_data_in(sent)], actor)
    written = stored[0].entity
    assert isinstance(written, ExchangeData)
    return _json(mapping.exchange_data_out(written))


async def exchange_data_maps(request: Request) -> Response:
    """`POST /rest/v2/exchangedatamap/batch` with `{"ids": [...]}`: the exchange data maps with those ids. iCure's
    clients make such maps for anonymous delegations (a patient's user sharing), which Medstream does not serve
    (`PUT` of them is a 404), so none exists: `[]`. (cardinal 1.0 asks, with no ids, while it reads the delegations
    of what it has just written.)"""
    await current_actor(state_of(request), request)
    await _body(request, ic.ListOfIds)
    return Response(b"[]", media_type="application/json")


# -- patients ----------------------------------------------------------------------------------------------------


async def create_patient(request: Request) -> Response:
    actor = await current_actor(state_of(request), request)
    sent = await _body(request, ic.Patient)
    if sent.rev is not None:
        raise ValidationError("a new patient has no rev")
    stored = await _write(state_of(request), PATIENTS, [mapping.patient_in(sent)], actor)
    written = stored[0].entity
    assert isinstance(written, Patient)
    return _json(mapping.patient_out(written))


async def modify_patient(request: Request) -> Response:
    """`PUT /rest/v2/patient`: a new revision of a patient, with its current rev (409 otherwise)."""
    actor = await current_actor(state_of(request), request)
    sent = await _body(request, ic.Patient)
    if sent.rev is None:
        raise ValidationError("send the patient's rev to modify it")
    stored = await _write(state_of(request), PATIENTS, [mapping.patient_in(sent)], actor)
    written = stored[0].entity
    assert isinstance(written, Patient)
    return _json(mapping.patient_out(written))


async def patient(request: Request) -> Response:
    actor = await current_actor(state_of(request), request)
    found = await state_of(request).repository.get(PATIENTS, _path(request, "id"), actor)
    assert isinstance(found, Patient)
    return _json(mapping.patient_out(found))


# -- contacts and services -------------------------------------------------------------------------------------


async def create_contact(request: Request) -> Response:
    """`POST /rest/v2/contact`: the contact and one DataSample per service, in one transaction (each sample's
    CREATE event is what `/ws/v2` subscribers to services receive)."""
    actor = await current_actor(state_of(request), request)
    sent = await _body(request, ic.Contact)
    if sent.rev is not None:
        raise ValidationError("a new contact has no rev")
    contact, samples = mapping.contact_in(sent)
    state = state_of(request)
    if len(samples) + 1 > state.settings.max_batch_size:
        raise ValidationError(f"a contact holds at most {state.settings.max_batch_size - 1} services")
    if state.settings.require_encryption:
        refuse_clear_fields([contact, *samples])
    written_contact, written_samples = await state.repository.create_or_modify_together(
        [(CONTACTS, [contact]), (DATA_SAMPLES, samples)], actor
    )
    stored = written_contact[0].entity
    assert isinstance(stored, Contact)
    return _json(mapping.contact_out(stored, [s.entity for s in written_samples if isinstance(s.entity, DataSample)]))


async def modify_contact(request: Request) -> Response:
    """`PUT /rest/v2/contact`: a new revision of a contact, with its current rev (409 otherwise), written as a
    creation is. In one transaction: the contact; the DataSample of each service that changed (an UPDATE) or is
    new (a CREATE); and, as iCure keeps a service only inside its contact, the DataSample of each service the
    contact no longer holds is deleted (a DELETE, which iCure's service subscribers are not sent). A service the
    modification leaves as it was is not written again."""
    actor = await current_actor(state_of(request), request)
    sent = await _body(request, ic.Contact)
    if sent.rev is None:
        raise ValidationError("send the contact's rev to modify it")
    contact, samples = mapping.contact_in(sent)
    state = state_of(request)
    if len(samples) + 1 > state.settings.max_batch_size:
        raise ValidationError(f"a contact holds at most {state.settings.max_batch_size - 1} services")
    if state.settings.require_encryption:
        refuse_clear_fields([contact, *samples])
    repository = state.repository
    current = await repository.get(CONTACTS, sent.id, actor)
    assert isinstance(current, Contact)
    if current.rev != sent.rev:
        raise ConflictError(f"stale rev for Contact {sent.id}: sent {sent.rev}, current is {current.rev}")
    held = [
        s for s in await repository.get_many(DATA_SAMPLES, current.data_sample_ids, actor) if isinstance(s, DataSample)
    ]
    if len(held) != len(set(current.data_sample_ids)):
        raise ForbiddenError(f"Contact {sent.id}: some of its services are not readable by you")
    stored = {s.id: s for s in held}
    writes = [
        sample if sample.id not in stored else sample.model_copy(update={"rev": stored[sample.id].rev})
        for sample in samples
        if sample.id not in stored or mapping.service_changed(sample, stored[sample.id])
    ]
    kept = {s.id for s in samples}
    removed = [i for i in current.data_sample_ids if i not in kept]
    written_contact, written_samples = await repository.create_or_modify_together(
        [(CONTACTS, [contact]), (DATA_SAMPLES, writes)], actor, deletions=[(DATA_SAMPLES, removed)]
    )
    written = written_contact[0].entity
    assert isinstance(written, Contact)
    now_held = {**{i: stored[i] for i in kept if i in stored}, **{s.entity.id: s.entity for s in written_samples}}
    return _json(mapping.contact_out(written, [s for s in now_held.values() if isinstance(s, DataSample)]))


async def contact(request: Request) -> Response:
    actor = await current_actor(state_of(request), request)
    repository = state_of(request).repository
    found = await repository.get(CONTACTS, _path(request, "id"), actor)
    assert isinstance(found, Contact)
    samples = await repository.get_many(DATA_SAMPLES, found.data_sample_ids, actor)
    return _json(mapping.contact_out(found, [s for s in samples if isinstance(s, DataSample)]))


def match(kind: EntityKind) -> Any:
    """`POST /rest/v2/contact/service/match`, `POST /rest/v2/patient/match`, `POST /rest/v2/helement/match`: the
    ids of the entities of `kind` an iCure filter (a leaf or a combinator) selects that you may read (what
    cardinal's `match_..._by` and `filter_..._by` call, and what a client re-reads after a reconnect)."""

    async def endpoint(request: Request) -> Response:
        actor = await current_actor(state_of(request), request)
        raw = await request.body()
        if not raw:
            raise ValidationError("the request needs a JSON body (a filter)")
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ValidationError(f"the body is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValidationError("the body is a filter: a JSON object with its $type")
        state = state_of(request)
        selector = medstream_filter(data, kind.name)
        if state.settings.require_encryption:
            refuse_encrypted_fields(selector)
        ids = await matching_ids(state, kind, selector, actor)
        return Response(orjson.dumps(ids), media_type="application/json")

    endpoint.__name__ = f"match_{kind.name.lower()}"
    return endpoint


async def services(request: Request) -> Response:
    """`POST /rest/v2/contact/service` with `{"ids": [...]}`: those services you may read, in the order asked."""
    actor = await current_actor(state_of(request), request)
    ids = (await _body(request, ic.ListOfIds)).ids
    found = await state_of(request).repository.get_many(DATA_SAMPLES, ids, actor)
    return _json_list([mapping.service_out(s) for s in found if isinstance(s, DataSample) and not s.is_deleted])


async def service(request: Request) -> Response:
    actor = await current_actor(state_of(request), request)
    found = await state_of(request).repository.get(DATA_SAMPLES, _path(request, "id"), actor)
    assert isinstance(found, DataSample)
    if found.is_deleted:
        # iCure's Service has no deletion date: a service its contact no longer holds is gone, as in iCure.
        raise NotFoundError(f"no service with id {found.id}")
    return _json(mapping.service_out(found))


# -- health elements ---------------------------------------------------------------------------------------------


async def _write_health_element(request: Request, *, new: bool) -> Response:
    """`POST /rest/v2/helement` (a new one, without rev) and `PUT /rest/v2/helement` (with its current rev,
    409 otherwise)."""
    actor = await current_actor(state_of(request), request)
    sent = await _body(request, ic.HealthElement)
    if new and sent.rev is not None:
        raise ValidationError("a new health element has no rev (PUT modifies one)")
    if not new and sent.rev is None:
        raise ValidationError("send the health element's rev to modify it")
    stored = await _write(state_of(request), HEALTH_ELEMENTS, [mapping.health_element_in(sent)], actor)
    written = stored[0].entity
    assert isinstance(written, HealthcareElement)
    return _json(mapping.health_element_out(written))


async def create_health_element(request: Request) -> Response:
    return await _write_health_element(request, new=True)


async def modify_health_element(request: Request) -> Response:
    return await _write_health_element(request, new=False)


async def health_element(request: Request) -> Response:
    actor = await current_actor(state_of(request), request)
    found = await state_of(request).repository.get(HEALTH_ELEMENTS, _path(request, "id"), actor)
    assert isinstance(found, HealthcareElement)
    return _json(mapping.health_element_out(found))


async def health_elements(request: Request) -> Response:
    """`POST /rest/v2/helement/byIds` with `{"ids": [...]}`: those you may read, in the order asked."""
    actor = await current_actor(state_of(request), request)
    ids = (await _body(request, ic.ListOfIds)).ids
    found = await state_of(request).repository.get_many(HEALTH_ELEMENTS, ids, actor)
    return _json_list([mapping.health_element_out(e) for e in found if isinstance(e, HealthcareElement)])


# -- deletes -----------------------------------------------------------------------------------------------------


def delete(kind: EntityKind) -> Any:
    """`DELETE /rest/v2/{patient,helement}/{id}?rev=`: the entity becomes a tombstone with `deletionDate` (a DELETE
    event, an UPDATE for iCure's subscribers); a `rev` that is not the current one is a 409. Answers iCure's
    `{"id", "rev"}`."""

    async def endpoint(request: Request) -> Response:
        actor = await current_actor(state_of(request), request)
        entity_id = _path(request, "id")
        repository = state_of(request).repository
        rev = request.query_params.get("rev")
        if rev is not None:
            current = await repository.get(kind, entity_id, actor)
            if current.rev != rev:
                raise ConflictError(f"stale rev for {kind.name} {entity_id}: sent {rev}, current is {current.rev}")
        [tombstone] = await repository.delete(kind, [entity_id], actor)
        return _json(ic.DocIdentifier(id=entity_id, rev=tombstone.rev))

    endpoint.__name__ = f"delete_{kind.name.lower()}"
    return endpoint


# -- sharing ---------------------------------------------------------------------------------------------------


async def _share_patient(state: ServerState, current: Entity, metadata: Any, actor: Actor) -> ic.IcureModel:
    assert isinstance(current, Patient)
    [stored] = await _write(state, PATIENTS, [current.model_copy(update={"security_metadata": metadata})], actor)
    assert isinstance(stored.entity, Patient)
    return mapping.patient_out(stored.entity)


async def _share_health_element(state: ServerState, current: Entity, metadata: Any, actor: Actor) -> ic.IcureModel:
    assert isinstance(current, HealthcareElement)
    update = {"security_metadata": metadata}
    [stored] = await _write(state, HEALTH_ELEMENTS, [current.model_copy(update=update)], actor)
    assert isinstance(stored.entity, HealthcareElement)
    return mapping.health_element_out(stored.entity)


async def _share_contact(state: ServerState, current: Entity, metadata: Any, actor: Actor) -> ic.IcureModel:
    """A contact is shared with its services: each DataSample carries the contact's security metadata."""
    assert isinstance(current, Contact)
    samples = await state.repository.get_many(DATA_SAMPLES, current.data_sample_ids, actor)
    if len(samples) != len(set(current.data_sample_ids)):
        raise ForbiddenError(f"Contact {current.id}: some of its services are not readable by you")
    update = {"security_metadata": metadata}
    written_contact, written_samples = await state.repository.create_or_modify_together(
        [
            (CONTACTS, [current.model_copy(update=update)]),
            (DATA_SAMPLES, [s.model_copy(update=update) for s in samples]),
        ],
        actor,
    )
    contact = written_contact[0].entity
    assert isinstance(contact, Contact)
    return mapping.contact_out(contact, [s.entity for s in written_samples if isinstance(s.entity, DataSample)])


SHARERS = {
    PATIENTS.name: _share_patient,
    CONTACTS.name: _share_contact,
    HEALTH_ELEMENTS.name: _share_health_element,
}


def bulk_share(kind: EntityKind, *, minimal: bool = False) -> Any:
    """`PUT /rest/v2/{patient,contact,helement}/bulkSharedMetadataUpdate[Minimal]`: cardinal's `share_with`. Each
    entity's requests are applied or refused on their own (`medstream.icure.sharing`), and the entity is written with
    Medstream's write rules (a delegation comes from its delegator only; one who may only read an entity cannot
    share it); the answer lists one result per entity, the written entity in it unless `minimal`."""
    sharer = SHARERS[kind.name]

    async def endpoint(request: Request) -> Response:
        actor = await current_actor(state_of(request), request)
        params = await _body(request, ic.BulkShareOrUpdateMetadataParams)
        state = state_of(request)
        me = actor.data_owner_id
        if me is None:
            raise ForbiddenError("this user acts as no data owner: it cannot share")
        results: list[ic.EntityBulkShareResult] = []
        for entity_id, info in params.requests_by_entity_id.items():
            try:
                current = await state.repository.get(kind, entity_id, actor)
            except NotFoundError as exc:
                results.append(rejected_all(entity_id, info, 404, exc.message))
                continue
            outcome = apply_requests(current.security_metadata, info, me)
            result = ic.EntityBulkShareResult(
                entity_id=entity_id, entity_rev=current.rev, rejected_requests=outcome.rejected
            )
            if outcome.changed:
                try:
                    updated = await sharer(state, current, outcome.metadata, actor)
                except MedstreamError as exc:
                    if exc.http_status >= 500:
                        raise
                    result = rejected_all(entity_id, info, exc.http_status, exc.message, current.rev)
                else:
                    result.updated_entity = None if minimal else updated
            results.append(result)
        return _json_list(results)

    endpoint.__name__ = f"bulk_share_{kind.name.lower()}"
    return endpoint


def _route(path: str, endpoint: Any, methods: list[str]) -> Route:
    return Route(path, icure_endpoint(endpoint), methods=methods)


def rest_routes() -> list[BaseRoute]:
    """`/rest/v2`, behind one Mount; a path it does not serve is an iCure-style 404."""
    routes: list[BaseRoute] = [
        _route("/auth/login", login, ["POST"]),
        _route("/auth/refresh", refresh, ["POST"]),
        _route("/auth/switch/{groupId}", switch_group, ["POST"]),
        _route("/user/matches", user_matches, ["GET"]),
        _route("/user/current", current_user, ["GET"]),
        _route("/dataowner/current", current_data_owner, ["GET"]),
        _route("/dataowner/stub", modify_stub, ["PUT"]),
        _route("/dataowner/stub/{id}", data_owner_stub, ["GET"]),
        _route("/dataowner/{id}", data_owner, ["GET"]),
        _route("/hcparty/{id}/aesExchangeKeys", aes_exchange_keys, ["GET"]),
        _route("/patient/{id}/aesExchangeKeys", aes_exchange_keys, ["GET"]),
        _route("/device/{id}/aesExchangeKeys", aes_exchange_keys, ["GET"]),
        _route("/exchangedata/byDelegatorDelegate/{delegator}/{delegate}", exchange_data_by_pair, ["GET"]),
        _route("/exchangedata/byParticipant/{dataOwnerId}", exchange_data_by_participant, ["GET"]),
        _route("/exchangedata", write_exchange_data, ["POST", "PUT"]),
        _route("/exchangedata/byIds", exchange_data_by_ids, ["POST"]),
        _route("/exchangedata/{id}", exchange_data, ["GET"]),
        _route("/exchangedatamap/batch", exchange_data_maps, ["POST"]),
        _route("/patient/bulkSharedMetadataUpdate", bulk_share(PATIENTS), ["PUT"]),
        _route("/patient/bulkSharedMetadataUpdateMinimal", bulk_share(PATIENTS, minimal=True), ["PUT"]),
        _route("/patient", create_patient, ["POST"]),
        _route("/patient", modify_patient, ["PUT"]),
        _route("/patient/match", match(PATIENTS), ["POST"]),
        _route("/patient/{id}", patient, ["GET"]),
        _route("/patient/{id}", delete(PATIENTS), ["DELETE"]),
        _route("/contact/bulkSharedMetadataUpdate", bulk_share(CONTACTS), ["PUT"]),
        _route("/contact/bulkSharedMetadataUpdateMinimal", bulk_share(CONTACTS, minimal=True), ["PUT"]),
        _route("/contact", create_contact, ["POST"]),
        _route("/contact", modify_contact, ["PUT"]),
        _route("/contact/service/match", match(DATA_SAMPLES), ["POST"]),
        _route("/contact/service", services, ["POST"]),
        _route("/contact/service/{id}", service, ["GET"]),
        _route("/contact/{id}", contact, ["GET"]),
        _route("/helement/bulkSharedMetadataUpdate", bulk_share(HEALTH_ELEMENTS), ["PUT"]),
        _route("/helement/bulkSharedMetadataUpdateMinimal", bulk_share(HEALTH_ELEMENTS, minimal=True), ["PUT"]),
        _route("/helement", create_health_element, ["POST"]),
        _route("/helement", modify_health_element, ["PUT"]),
        _route("/helement/match", match(HEALTH_ELEMENTS), ["POST"]),
        _route("/helement/byIds", health_elements, ["POST"]),
        _route("/helement/{id}", health_element, ["GET"]),
        _route("/helement/{id}", delete(HEALTH_ELEMENTS), ["DELETE"]),
        Route("/{rest:path}", not_served, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
    ]
    return [Mount("/rest/v2", routes=routes, name="icure-rest-v2")]
