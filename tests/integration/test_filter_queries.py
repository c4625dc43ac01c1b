"""filter_*_by and match_*_by through the SDK, against a real server on both databases: every builder selects
exactly its entities, pages cover every row once, and neither call ever shows what the caller may not read or
what was deleted. Bad filters are 400s naming the bad node.

Each test makes its own professional (so data-owner filters see only that test's entities) and its own labels,
names and ids (so the filters that span data owners do too).
"""

from __future__ import annotations

import asyncio
import datetime
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import httpx
import pytest

from medstream.errors import NotFoundError, ValidationError
from medstream.filters.builders import date_of_birth_bounds
from medstream.model import (
    ENTITY_KINDS,
    CodingReference,
    DataSample,
    Entity,
    EntityKind,
    Gender,
    HealthcareElement,
    HealthcareProfessional,
    Identifier,
    MedicalDevice,
    Notification,
    NotificationType,
    Patient,
    User,
)
from medstream.sdk import (
    ContactFilter,
    DataSampleFilter,
    ExchangeDataFilter,
    FilterComposition,
    HealthcareElementFilter,
    HealthcareProfessionalFilter,
    MedicalDeviceFilter,
    MedTechApi,
    NotificationFilter,
    PaginatedList,
    PatientFilter,
    UserFilter,
)
from medstream.server.routes import queries as query_routes
from tests.conftest import Professional, ProfessionalFactory, RunningServer
from tests.integration.kinds import ops_for, sub_api

BUILDERS: dict[str, Any] = {
    "Patient": PatientFilter,
    "DataSample": DataSampleFilter,
    "Contact": ContactFilter,
    "HealthcareElement": HealthcareElementFilter,
    "HealthcareProfessional": HealthcareProfessionalFilter,
    "MedicalDevice": MedicalDeviceFilter,
    "Notification": NotificationFilter,
    "User": UserFilter,
    "ExchangeData": ExchangeDataFilter,
}
KIND_PARAMS = [pytest.param(kind, id=kind.name) for kind in ENTITY_KINDS]
NON_USER_KINDS = [pytest.param(kind, id=kind.name) for kind in ENTITY_KINDS if kind.name != "User"]
# The kinds another professional's entities of can be shared: not users (admins only), not exchange data.
SHARABLE_KINDS = [
    pytest.param(kind, id=kind.name) for kind in ENTITY_KINDS if kind.name != "User" and not kind.is_exchange_data
]

FilterBy = Callable[..., Awaitable[PaginatedList[Any]]]
MatchBy = Callable[[Any], Awaitable[list[str]]]


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _ids(entities: Iterable[Entity]) -> list[str]:
    return sorted(str(entity.id) for entity in entities)


async def _selects(filter_by: FilterBy, match_by: MatchBy, filter: Any, expected: Iterable[Entity]) -> None:
    """`filter` selects exactly `expected`, in id order, through both calls."""
    wanted = _ids(expected)
    page = await filter_by(filter)
    assert [row.id for row in page.rows] == wanted
    assert page.next_id is None
    assert await match_by(filter) == wanted


async def _token(api: MedTechApi) -> str:
    return await api.transport.access_token()


# --- every builder, through the server ------------------------------------------------------------------


async def test_every_patient_builder_method_selects_exactly_its_patients(
    new_professional: ProfessionalFactory,
) -> None:
    """The patients are written through the SDK, which encrypts their names, SSINs and identifiers and gives
    them blind-index tokens: the builders' searches on those fields are blind-index filters, the others read
    clear fields."""
    doctor = await new_professional()
    api = doctor.api.patient_api
    today = datetime.date.today()
    first_42, last_42 = date_of_birth_bounds(42, today)
    day_before = int((datetime.date.fromisoformat(str(first_42)) - datetime.timedelta(days=1)).strftime("%Y%m%d"))
    day_after = int((datetime.date.fromisoformat(str(last_42)) + datetime.timedelta(days=1)).strftime("%Y%m%d"))
    system, profession = _unique("urn:test"), _unique("astronaut")
    alice, bob, carol, dan = await api.create_or_modify_patients(
        [
            Patient(
                first_name="Alice",
                last_name="Zéphyrin",
                gender=Gender.female,
                education="university",
                profession=profession,
                ssin="11111111111",
                date_of_birth=first_42,
                identifiers=[Identifier(system=system, value="A")],
            ),
            Patient(
                first_name="Bob", last_name="Zephyrine", gender=Gender.male, ssin="22222222222", date_of_birth=last_42
            ),
            Patient(first_name="Carol", last_name="Other", gender=Gender.female, date_of_birth=day_before),
            Patient(first_name="Dan", last_name="Other", date_of_birth=day_after),
        ],
    )
    filter_by, match_by = api.filter_patients_by, api.match_patients_by

    await _selects(filter_by, match_by, await PatientFilter(doctor.api).build(), [alice, bob, carol, dan])
    await _selects(
        filter_by, match_by, await PatientFilter(doctor.api).for_self().by_ids([bob.id, dan.id]).build(), [bob, dan]
    )
    identifiers = [Identifier(system=system, value="A"), Identifier(system=system, value="none")]
    await _selects(filter_by, match_by, await PatientFilter(doctor.api).by_identifiers(identifiers).build(), [alice])
    by_gender = PatientFilter(doctor.api).by_gender_education_profession(Gender.female)
    await _selects(filter_by, match_by, await by_gender.build(), [alice, carol])
    by_profession = PatientFilter(doctor.api).by_gender_education_profession("female", "university", profession)
    await _selects(filter_by, match_by, await by_profession.build(), [alice])
    with_ssins = PatientFilter(doctor.api).with_ssins(["22222222222", "11111111111", "33333333333"])
    await _selects(filter_by, match_by, await with_ssins.build(), [alice, bob])
    await _selects(filter_by, match_by, await PatientFilter(doctor.api).of_age(42).build(), [alice, bob])
    between = PatientFilter(doctor.api).date_of_birth_between(day_before, first_42)
    await _selects(filter_by, match_by, await between.build(), [alice, carol])
    await _selects(filter_by, match_by, await PatientFilter(doctor.api).contains_fuzzy("zephyr").build(), [alice, bob])
    both = PatientFilter(doctor.api).contains_fuzzy("ZÉPHYR").sort.by_gender_education_profession("male")
    await _selects(filter_by, match_by, await both.build(), [bob])


async def test_every_data_sample_builder_method_selects_exactly_its_samples(
    new_professional: ProfessionalFactory,
) -> None:
    doctor = await new_professional()
    patient, other_patient = await doctor.api.patient_api.create_or_modify_patients(
        [Patient(first_name="P"), Patient(first_name="Q")]
    )
    element = await doctor.api.healthcare_element_api.create_or_modify_healthcare_element(
        HealthcareElement(patient_id=patient.id, description="Asthma")
    )
    tag, system = _unique("IC-TEST"), _unique("urn:sample")
    test_label = CodingReference(type=tag, code="TEST")
    api = doctor.api.data_sample_api
    labelled, dated, linked = await api.create_or_modify_data_samples_for(
        str(patient.id),
        [
            DataSample(
                labels={test_label}, value_date=20240101083000, identifiers=[Identifier(system=system, value="1")]
            ),
            DataSample(
                labels={CodingReference(type=tag, code="OTHER")},
                codes={CodingReference(type="LOINC", code="8867-4")},
                value_date=20240615120000,
            ),
            DataSample(healthcare_element_ids={str(element.id)}, value_date=20241231235959),
        ],
    )
    (elsewhere,) = await api.create_or_modify_data_samples_for(str(other_patient.id), [DataSample(labels={test_label})])
    filter_by, match_by = api.filter_data_samples_by, api.match_data_samples_by

    def builder() -> DataSampleFilter:
        return DataSampleFilter(doctor.api).for_self()

    await _selects(filter_by, match_by, await builder().build(), [labelled, dated, linked, elsewhere])
    await _selects(filter_by, match_by, await builder().by_ids([str(dated.id), "no-such-id"]).build(), [dated])
    by_identifier = builder().by_identifiers([Identifier(system=system, value="1")])
    await _selects(filter_by, match_by, await by_identifier.build(), [labelled])
    # the iCure guide's form: a label type and code
    await _selects(
        filter_by, match_by, await builder().by_label_code_filter(tag, "TEST").build(), [labelled, elsewhere]
    )
    await _selects(filter_by, match_by, await builder().by_label_code_filter(tag).build(), [labelled, dated, elsewhere])
    by_code = builder().by_label_code_filter(code_type="LOINC", code_code="8867-4")
    await _selects(filter_by, match_by, await by_code.build(), [dated])
    by_date = builder().by_label_code_date_filter(tag, start_value_date=20240201000000, end_value_date=20241231235959)
    await _selects(filter_by, match_by, await by_date.build(), [dated])
    on_the_bounds = builder().by_label_code_date_filter(tag, None, None, None, 20240101083000, 20240101083000)
    await _selects(filter_by, match_by, await on_the_bounds.build(), [labelled])
    await _selects(filter_by, match_by, await builder().for_patients([patient]).build(), [labelled, dated, linked])
    await _selects(filter_by, match_by, await builder().for_patients([str(other_patient.id)]).build(), [elsewhere])
    by_element = builder().by_health_element_ids([str(element.id)])
    await _selects(filter_by, match_by, await by_element.build(), [linked])
    sorted_both = builder().for_patients([patient]).sort.by_label_code_filter(tag, "TEST")
    await _selects(filter_by, match_by, await sorted_both.build(), [labelled])


async def test_every_healthcare_element_builder_method_selects_exactly_its_elements(
    new_professional: ProfessionalFactory,
) -> None:
    doctor = await new_professional()
    patient, other_patient = await doctor.api.patient_api.create_or_modify_patients(
        [Patient(first_name="P"), Patient(first_name="Q")]
    )
    tag, system = _unique("DIAG"), _unique("urn:element")
    api = doctor.api.healthcare_element_api
    asthma, flu, loose = await api.create_or_modify_healthcare_elements(
        [
            HealthcareElement(
                patient_id=patient.id,
                labels={CodingReference(type=tag, code="chronic")},
                codes={CodingReference(type="ICD10", code="J45")},
                identifiers=[Identifier(system=system, value="asthma")],
            ),
            HealthcareElement(patient_id=other_patient.id, labels={CodingReference(type=tag, code="acute")}),
            HealthcareElement(description="no patient"),
        ]
    )
    filter_by, match_by = api.filter_healthcare_elements_by, api.match_healthcare_elements_by

    await _selects(filter_by, match_by, await HealthcareElementFilter(doctor.api).build(), [asthma, flu, loose])
    await _selects(filter_by, match_by, await HealthcareElementFilter(doctor.api).by_ids([str(flu.id)]).build(), [flu])
    by_identifier = HealthcareElementFilter(doctor.api).by_identifiers([Identifier(system=system, value="asthma")])
    await _selects(filter_by, match_by, await by_identifier.build(), [asthma])
    await _selects(
        filter_by, match_by, await HealthcareElementFilter(doctor.api).by_label_code_filter(tag).build(), [asthma, flu]
    )
    by_code = HealthcareElementFilter(doctor.api).by_label_code_filter(tag, "chronic", "ICD10", "J45")
    await _selects(filter_by, match_by, await by_code.build(), [asthma])
    by_patients = HealthcareElementFilter(doctor.api).for_patients([patient, other_patient])
    await _selects(filter_by, match_by, await by_patients.build(), [asthma, flu])


async def test_every_professional_and_device_builder_method_selects_exactly_its_entities(
    admin_api: MedTechApi, new_professional: ProfessionalFactory
) -> None:
    doctor = await new_professional()
    speciality, name = _unique("SPECIALITY"), uuid.uuid4().hex[:12]
    hcps = admin_api.healthcare_professional_api
    cardio, neuro = await hcps.create_or_modify_healthcare_professionals(
        [
            HealthcareProfessional(
                first_name="Anna", last_name=f"Qx{name}", labels={CodingReference(type=speciality, code="cardio")}
            ),
            HealthcareProfessional(name=f"Dr Qx{name} Junior", labels={CodingReference(type=speciality, code="neuro")}),
        ]
    )
    filter_by, match_by = hcps.filter_healthcare_professionals_by, hcps.match_healthcare_professionals_by
    everyone = await HealthcareProfessionalFilter(admin_api).build()
    assert {cardio.id, neuro.id, doctor.id} <= set(await match_by(everyone))
    by_ids = HealthcareProfessionalFilter(admin_api).by_ids([str(cardio.id)])
    await _selects(filter_by, match_by, await by_ids.build(), [cardio])
    by_label = HealthcareProfessionalFilter(admin_api).by_label_code_filter(speciality)
    await _selects(filter_by, match_by, await by_label.build(), [cardio, neuro])
    by_label_code = HealthcareProfessionalFilter(admin_api).by_label_code_filter(speciality, "neuro")
    await _selects(filter_by, match_by, await by_label_code.build(), [neuro])
    await _selects(
        filter_by,
        match_by,
        await HealthcareProfessionalFilter(admin_api).by_matches(f"QX{name}").build(),
        [cardio, neuro],
    )
    # a professional sees only the professionals shared with them: their own record here
    own = doctor.api.healthcare_professional_api
    await _selects(own.filter_by, own.match_by, await HealthcareProfessionalFilter(doctor.api).build(), [doctor.hcp])

    kind = _unique("KIND")
    devices = doctor.api.medical_device_api
    scale, meter = await devices.create_or_modify_medical_devices(
        [
            MedicalDevice(name="Scale", labels={CodingReference(type=kind, code="weight")}),
            MedicalDevice(name="Meter", labels={CodingReference(type=kind, code="glucose")}),
        ]
    )
    filter_by, match_by = devices.filter_medical_devices_by, devices.match_medical_devices_by
    await _selects(filter_by, match_by, await MedicalDeviceFilter(doctor.api).build(), [scale, meter])
    await _selects(filter_by, match_by, await MedicalDeviceFilter(doctor.api).by_ids([str(meter.id)]).build(), [meter])
    await _selects(
        filter_by, match_by, await MedicalDeviceFilter(doctor.api).by_label_code_filter(kind, "weight").build(), [scale]
    )


async def test_every_notification_and_user_builder_method_selects_exactly_its_entities(
    admin_api: MedTechApi, new_professional: ProfessionalFactory
) -> None:
    doctor = await new_professional()
    notifications = doctor.api.notification_api
    first = await notifications.create_or_modify_notification(Notification(type=NotificationType.KEY_PAIR_UPDATE))
    await asyncio.sleep(0.01)  # so that `created` differs
    second = await notifications.create_or_modify_notification(Notification(type=NotificationType.OTHER))
    assert first.created is not None and second.created is not None and first.created < second.created
    filter_by, match_by = notifications.filter_notifications_by, notifications.match_notifications_by
    await _selects(filter_by, match_by, await NotificationFilter(doctor.api).build(), [first, second])
    await _selects(filter_by, match_by, await NotificationFilter(doctor.api).by_ids([str(second.id)]).build(), [second])
    by_type = NotificationFilter(doctor.api).with_type(NotificationType.KEY_PAIR_UPDATE)
    await _selects(filter_by, match_by, await by_type.build(), [first])
    await _selects(
        filter_by, match_by, await NotificationFilter(doctor.api).after_date(second.created).build(), [second]
    )

    patient = await doctor.api.patient_api.create_or_modify_patient(Patient(first_name="Has", last_name="Account"))
    users = admin_api.user_api
    patient_user, other_user = await users.create_or_modify_users(
        [
            User(login=_unique("patient"), patient_id=patient.id, password=_unique("pw")),
            User(login=_unique("other"), password=_unique("pw")),
        ]
    )
    filter_by, match_by = users.filter_users_by, users.match_users_by
    everyone = await UserFilter(admin_api).build()
    assert {patient_user.id, other_user.id} <= set(await match_by(everyone))
    await _selects(filter_by, match_by, await UserFilter(admin_api).by_ids([str(other_user.id)]).build(), [other_user])
    await _selects(
        filter_by, match_by, await UserFilter(admin_api).by_patient_id(str(patient.id)).build(), [patient_user]
    )


async def test_composed_filters_select_the_union_intersection_and_complement(
    new_professional: ProfessionalFactory,
) -> None:
    doctor = await new_professional()
    api = doctor.api.patient_api
    a, b, c = await api.create_or_modify_patients(
        [Patient(first_name="A", ssin="1"), Patient(first_name="B", ssin="2"), Patient(first_name="C", ssin="3")]
    )
    by_ssin = await PatientFilter(doctor.api).with_ssins(["1", "2"]).build()
    by_ids = await PatientFilter(doctor.api).by_ids([str(b.id), str(c.id)]).build()
    everyone = await PatientFilter(doctor.api).build()
    filter_by, match_by = api.filter_patients_by, api.match_patients_by
    await _selects(filter_by, match_by, FilterComposition.union(by_ssin, by_ids), [a, b, c])
    await _selects(filter_by, match_by, FilterComposition.intersection(by_ssin, by_ids), [b])
    await _selects(filter_by, match_by, FilterComposition.complement(everyone, by_ids), [a])


# --- paging ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [7, 6, 0])
async def test_pages_of_limit_rows_cover_every_match_once_and_the_last_page_says_so(
    new_professional: ProfessionalFactory, count: int
) -> None:
    doctor = await new_professional()
    patient = await doctor.api.patient_api.create_or_modify_patient(Patient(first_name="Paged"))
    tag = _unique("PAGE")
    api = doctor.api.data_sample_api
    created = await api.create_or_modify_data_samples_for(
        str(patient.id), [DataSample(labels={CodingReference(type=tag, code=str(i))}) for i in range(count)]
    )
    await api.create_or_modify_data_sample_for(str(patient.id), DataSample(comment="unlabelled"))
    filter = await DataSampleFilter(doctor.api).by_label_code_filter(tag).build()

    pages: list[list[str]] = []
    next_id: str | None = None
    while True:
        page = await api.filter_data_samples_by(filter, next_id=next_id, limit=3)
        pages.append([str(row.id) for row in page.rows])
        if page.next_id is None:
            break
        assert page.next_id == page.rows[-1].id
        next_id = page.next_id
    assert [len(rows) for rows in pages] == {7: [3, 3, 1], 6: [3, 3], 0: [0]}[count]
    assert [entity_id for rows in pages for entity_id in rows] == _ids(created)

    first = await api.filter_data_samples_by(filter, limit=3)
    assert [str(row.id) async for row in first.all_rows()] == _ids(created)
    assert len([page async for page in first.all_pages()]) == len(pages)
    assert await api.match_data_samples_by(filter) == _ids(created)


async def test_a_limit_out_of_bounds_is_rejected(new_professional: ProfessionalFactory) -> None:
    doctor = await new_professional()
    filter = await PatientFilter(doctor.api).build()
    for limit in (0, 10_001):
        with pytest.raises(ValidationError, match="limit"):
            await doctor.api.patient_api.filter_patients_by(filter, limit=limit)


async def test_match_past_its_bound_fails_rather_than_answer_part_of_the_ids(
    new_professional: ProfessionalFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    doctor = await new_professional()
    api = doctor.api.patient_api
    await api.create_or_modify_patients([Patient(first_name=str(i)) for i in range(4)])
    filter = await PatientFilter(doctor.api).build()
    monkeypatch.setattr(query_routes, "MAX_MATCH_IDS", 4)  # the servers of the tests run in this process
    assert len(await api.match_patients_by(filter)) == 4
    monkeypatch.setattr(query_routes, "MAX_MATCH_IDS", 3)
    with pytest.raises(ValidationError, match="matches more than 3 ids"):
        await api.match_patients_by(filter)


# --- the access rule and deletions ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", SHARABLE_KINDS)
async def test_another_professionals_unshared_entities_never_appear_even_by_id(
    kind: EntityKind, new_professional: ProfessionalFactory, admin_api: MedTechApi
) -> None:
    owner = await new_professional("Owner", "Doctor")
    ops = await ops_for(kind, owner, admin_api)
    created = await ops.create()
    stranger = await new_professional("Stranger", "Doctor")
    theirs = sub_api(stranger.api, kind)
    filters = [
        await BUILDERS[kind.name](stranger.api).by_ids([str(created.id)]).build(),
        await BUILDERS[kind.name](stranger.api).build(),
    ]
    for filter in filters:
        assert created.id not in [row.id for row in (await theirs.filter_by(filter)).rows]
        assert created.id not in await theirs.match_by(filter)

    await ops.sub.give_access_to(created, stranger.id)
    for filter in filters:
        assert created.id in [row.id for row in (await theirs.filter_by(filter)).rows]
        assert created.id in await theirs.match_by(filter)


async def test_a_data_owner_filter_for_another_data_owner_still_shows_only_what_you_may_read(
    new_professional: ProfessionalFactory,
) -> None:
    owner = await new_professional("Owner", "Doctor")
    mine = await owner.api.patient_api.create_or_modify_patient(Patient(first_name="Mine"))
    stranger = await new_professional("Stranger", "Doctor")
    theirs = await stranger.api.patient_api.create_or_modify_patient(Patient(first_name="Theirs"))
    # asking for the owner's patients does not make them readable
    filter = await PatientFilter(stranger.api).for_data_owner(owner.id).build()
    assert await stranger.api.patient_api.match_patients_by(filter) == []
    filter = await PatientFilter(owner.api).for_data_owner(owner.id).build()
    assert await owner.api.patient_api.match_patients_by(filter) == [mine.id]
    assert theirs.id not in await owner.api.patient_api.match_patients_by(await PatientFilter(owner.api).build())


@pytest.mark.parametrize("kind", KIND_PARAMS)
async def test_deleted_entities_never_appear(
    kind: EntityKind, new_professional: ProfessionalFactory, admin_api: MedTechApi
) -> None:
    doctor = await new_professional()
    ops = await ops_for(kind, doctor, admin_api)
    kept, deleted = await ops.create(), await ops.create()
    await ops.delete(str(deleted.id))
    by_ids = await BUILDERS[kind.name](ops.api).by_ids([str(kept.id), str(deleted.id)]).build()
    page = await ops.sub.filter_by(by_ids)
    assert [row.id for row in page.rows] == [kept.id]
    assert await ops.sub.match_by(by_ids) == [kept.id]
    if kind.name != "User":  # the admin has no data owner to build the default of
        everything = await ops.sub.match_by(await BUILDERS[kind.name](ops.api).build())
        assert kept.id in everything and deleted.id not in everything


async def test_a_user_without_data_owner_gets_a_clear_error_building_a_data_owner_filter(admin_api: MedTechApi) -> None:
    with pytest.raises(NotFoundError, match="no data owner"):
        await PatientFilter(admin_api).build()


# --- bad filters ----------------------------------------------------------------------------------------


async def _post(server: RunningServer, doctor: Professional, path: str, body: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url) as client:
        return await client.post(path, json=body, headers={"Authorization": f"Bearer {await _token(doctor.api)}"})


BAD_FILTERS: list[tuple[str, Any, list[str]]] = [
    (
        "a bad node inside a combinator",
        {
            "$type": "IntersectionFilter",
            "filters": [{"$type": "PatientByIdsFilter", "ids": ["a"]}, {"$type": "PatientByIdsFilter", "ids": "a"}],
        },
        ["PatientByIdsFilter", "filters[1]", "ids"],
    ),
    (
        "an unknown $type",
        {"$type": "UnionFilter", "filters": [{"$type": "PatientByNicknameFilter"}]},
        ["unknown $type PatientByNicknameFilter", "filters[0]"],
    ),
    ("no $type", {"ids": ["a"]}, ["missing $type", "the root"]),
    (
        "a node of another entity type",
        {
            "$type": "ComplementFilter",
            "superSet": {"$type": "PatientByIdsFilter", "ids": ["a"]},
            "subSet": {"$type": "DataSampleByIdsFilter", "ids": ["a"]},
        },
        ["DataSampleByIdsFilter", "subSet", "a DataSample filter where a Patient filter is expected"],
    ),
]


@pytest.mark.parametrize(("filter", "words"), [pytest.param(f, w, id=name) for name, f, w in BAD_FILTERS])
async def test_a_bad_filter_is_a_400_naming_the_node_and_its_path(
    server: RunningServer, new_professional: ProfessionalFactory, filter: Any, words: list[str]
) -> None:
    doctor = await new_professional()
    for path, body in (("/rest/v1/patients/filter", {"filter": filter}), ("/rest/v1/patients/match", filter)):
        response = await _post(server, doctor, path, body)
        assert response.status_code == 400, response.text
        payload = response.json()
        assert payload["error"] == "validation_error"
        for word in words:
            assert word in payload["message"], (word, payload["message"])
        assert payload["details"] and "path" in payload["details"][0]


async def test_a_filter_of_another_entity_type_is_a_400(
    server: RunningServer, new_professional: ProfessionalFactory
) -> None:
    doctor = await new_professional()
    patients = await PatientFilter(doctor.api).build()
    response = await _post(server, doctor, "/rest/v1/data-samples/filter", {"filter": patients.to_json_dict()})
    assert response.status_code == 400
    assert "a Patient filter where a DataSample filter is expected" in response.json()["message"]
    with pytest.raises(ValidationError, match="PatientByHealthcarePartyFilter at the root"):
        await doctor.api.data_sample_api.match_data_samples_by(patients)


async def test_a_malformed_request_is_a_400(server: RunningServer, new_professional: ProfessionalFactory) -> None:
    doctor = await new_professional()
    for body in ({}, {"filter": {"$type": "AllUsersFilter"}, "limit": "many"}, {"filter": None}):
        response = await _post(server, doctor, "/rest/v1/users/filter", body)
        assert response.status_code == 400, (body, response.text)
    async with httpx.AsyncClient(base_url=server.url) as client:
        response = await client.post("/rest/v1/users/match", json={"$type": "AllUsersFilter"})
    assert response.status_code == 401
