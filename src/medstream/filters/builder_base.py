"""What every filter builder shares (`builders.py` has the seven builders): collecting constraints, resolving
the data owner, `.sort`, and `build()`.

A constraint is kept as its node class and fields, and made into a node at `build()`, once the data owner is
known; it is also made once when its method is called, with a stand-in data owner, so that a bad argument
fails at the call that passed it.

A search on a field the server's configuration encrypts (the SSIN, identifiers, names) cannot be answered in
clear: when the API can make blind-index tokens (`BlindIndexSearcher`; `MedTechApi` for a data owner) and
says the field is searched blind, `build()` makes the kind's blind-index node instead, one per group of tokens
it answers (a name search: one per word).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, Self, TypeVar, cast, runtime_checkable

import pydantic

from medstream.errors import ValidationError
from medstream.filters.base import LeafFilter
from medstream.filters.tree import Filter, IntersectionFilter
from medstream.model.common import Identifier
from medstream.model.patient import Patient

# The field a data-owner node names its data owner in (two Medtech nodes call it `hcpId`).
_OWNER_FIELDS = ("healthcare_party_id", "hcp_id")
_UNRESOLVED_OWNER = "unresolved-data-owner"

M = TypeVar("M", bound=Callable[..., Any])


class _DataOwner(Protocol):
    @property
    def id(self) -> str | None: ...


class _DataOwnerWithType(Protocol):
    @property
    def data_owner(self) -> _DataOwner: ...


class DataOwnerProvider(Protocol):
    """What a builder needs of the API: the logged-in user's data owner. `MedTechApi` is one."""

    async def get_data_owner(self) -> _DataOwnerWithType: ...


@runtime_checkable
class BlindIndexSearcher(Protocol):
    """An API that makes blind-index tokens for searches: `MedTechApi` (with its search keys)."""

    async def blind_index_tokens(self, entity_type: str, field: str, values: Sequence[Any]) -> list[list[str]] | None:
        """Token groups an entity must all match (each by one token) to hold `values` in the blind-index
        `field`; None when the field is searched in clear."""
        ...


@dataclass(frozen=True)
class _BlindSearch:
    """What a constraint searches, for its blind-index form: the kind's blind-index node, the field, and the
    clear values (texts, or identifiers as wire dicts)."""

    node_type: type[LeafFilter]
    field: str
    values: tuple[Any, ...]


def adds_constraint(method: M) -> M:
    """Marks a builder method that adds one constraint, so that `.sort` accepts it."""
    method._adds_constraint = True  # type: ignore[attr-defined]
    return method


@dataclass(frozen=True)
class _Constraint:
    """A node to make once the data owner is known: its class and every field but the data owner."""

    node_type: type[LeafFilter]
    fields: dict[str, Any]
    where: str
    blind: _BlindSearch | None = None

    @property
    def owner_field(self) -> str | None:
        return next((name for name in _OWNER_FIELDS if name in self.node_type.model_fields), None)

    def node(self, data_owner_id: str | None) -> Filter:
        fields = dict(self.fields)
        if self.owner_field is not None:
            fields[self.owner_field] = data_owner_id
        try:
            return cast("Filter", self.node_type.model_validate(fields))
        except pydantic.ValidationError as exc:
            messages = []
            for error in exc.errors(include_url=False, include_input=False):
                field = ".".join(str(part) for part in error["loc"])
                message = str(error["msg"]).removeprefix("Value error, ")
                messages.append(f"{field}: {message}" if field else message)
            raise ValidationError(f"{self.where}: {'; '.join(messages)}") from None


class FilterBuilder:
    """Collects constraints and builds their intersection; `_default` (with `_default_fields`) is what a
    builder without constraints gives."""

    _default: ClassVar[type[LeafFilter]]
    _default_fields: ClassVar[dict[str, Any]] = {}

    def __init__(self, api: DataOwnerProvider) -> None:
        self._api = api
        self._data_owner_id: str | None = None  # None: the logged-in user's
        self._constraints: list[_Constraint] = []
        self._sort_index: int | None = None

    @property
    def sort(self) -> Self:
        """`builder.sort.by_xxx(...)` adds that constraint and puts it first in the intersection. Results are
        ordered by id whatever the sort; the filter language has no sort order to record."""
        return cast(Self, _SortProxy(self))

    async def build(self) -> Filter:
        """The one constraint alone, the intersection of several (the sort one first), or the default filter."""
        default = _Constraint(self._default, self._default_fields, self._where("build"))
        constraints = list(self._constraints) or [default]
        if self._sort_index is not None:
            constraints.insert(0, constraints.pop(self._sort_index))
        constraints = [resolved for c in constraints for resolved in await self._blind_or_clear(c)]
        needs_owner = any(c.owner_field is not None for c in constraints)
        data_owner_id = await self._resolve_data_owner() if needs_owner else None
        nodes = tuple(c.node(data_owner_id) for c in constraints)
        return nodes[0] if len(nodes) == 1 else IntersectionFilter(filters=nodes)

    async def _blind_or_clear(self, constraint: _Constraint) -> list[_Constraint]:
        """The constraint as it is, or its blind-index form when the API searches its field through tokens."""
        blind = constraint.blind
        if blind is None or not isinstance(self._api, BlindIndexSearcher):
            return [constraint]
        groups = await self._api.blind_index_tokens(blind.node_type.entity_type, blind.field, blind.values)
        if groups is None:
            return [constraint]
        return [
            _Constraint(blind.node_type, {"field": blind.field, "tokens": group}, constraint.where) for group in groups
        ]

    async def _resolve_data_owner(self) -> str:
        if self._data_owner_id is not None:
            return self._data_owner_id
        data_owner_id = (await self._api.get_data_owner()).data_owner.id
        if not data_owner_id:
            raise ValidationError(f"{type(self).__name__}: the logged-in user's data owner has no id")
        return data_owner_id

    def _where(self, method: str) -> str:
        return f"{type(self).__name__}.{method}"

    def _add(self, method: str, node_type: type[LeafFilter], blind: _BlindSearch | None = None, **fields: Any) -> Self:
        constraint = _Constraint(node_type, fields, self._where(method), blind)
        constraint.node(_UNRESOLVED_OWNER)
        self._constraints.append(constraint)
        return self

    def _strings(self, method: str, values: Sequence[str], what: str = "id") -> list[str]:
        """A non-empty list of strings (one string is a mistake, not a list of its characters)."""
        if isinstance(values, str):
            raise ValidationError(f"{self._where(method)} takes a list of {what}s, not one string: [{values!r}]")
        if not values:
            raise ValidationError(f"{self._where(method)} needs at least one {what}")
        return list(values)

    def _blind_index(self, node_type: type[LeafFilter], field: str, tokens: Sequence[str]) -> Self:
        """A constraint on `tokens` under the blind-index `field`: the tokens the SDK computed from clear values
        with its index key (`medstream.crypto.blind_index`)."""
        tokens = self._strings("by_blind_index", tokens, "token")
        return self._add("by_blind_index", node_type, field=field, tokens=tokens)

    @staticmethod
    def _blind(node_type: type[LeafFilter], field: str, values: Sequence[Any]) -> _BlindSearch:
        """The blind-index form of a search of `values` in `field` (`node_type`: the kind's blind-index node)."""
        return _BlindSearch(node_type, field, tuple(values))

    def _identifiers(self, identifiers: Sequence[Identifier]) -> list[Identifier]:
        if not identifiers:
            raise ValidationError(f"{self._where('by_identifiers')} needs at least one identifier")
        return list(identifiers)

    def _patient_ids(self, patients: Sequence[Patient] | Sequence[str]) -> list[str]:
        where = self._where("for_patients")
        if isinstance(patients, str):
            raise ValidationError(f"{where} takes a list of patients or patient ids, not one string")
        ids = [patient if isinstance(patient, str) else patient.id for patient in patients]
        if not all(ids):
            raise ValidationError(f"{where}: every patient must be a patient id or a stored Patient (with an id)")
        return self._strings("for_patients", [patient_id for patient_id in ids if patient_id], "patient")

    def _check_codings(
        self,
        method: str,
        label: str,
        label_type: str | None,
        label_code: str | None,
        code_type: str | None,
        code_code: str | None,
    ) -> None:
        """A label part (`label`_type, `label`_code) needs its type, as a code part does; and a constraint
        needs at least one of the two types."""
        where = self._where(method)
        if label_code is not None and label_type is None:
            raise ValidationError(f"{where}: {label}_code needs {label}_type")
        if code_code is not None and code_type is None:
            raise ValidationError(f"{where}: code_code needs code_type")
        if label_type is None and code_type is None:
            raise ValidationError(f"{where} needs {label}_type or code_type (or both)")


class DataOwnerFilterBuilder(FilterBuilder):
    """A builder whose constraints are restricted to the entities shared with one data owner."""

    def for_self(self) -> Self:
        """Restrict to the entities shared with the logged-in user's data owner (the default)."""
        self._data_owner_id = None
        return self

    def for_data_owner(self, data_owner_id: str) -> Self:
        """Restrict to the entities shared with the data owner `data_owner_id`."""
        if not data_owner_id:
            raise ValidationError(f"{self._where('for_data_owner')} needs a data owner id")
        self._data_owner_id = data_owner_id
        return self


class _SortProxy:
    """`builder.sort`: forwards a constraint method to the builder and marks the constraint it adds."""

    def __init__(self, builder: FilterBuilder) -> None:
        self._builder = builder

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._builder, name)
        if not getattr(method, "_adds_constraint", False):
            raise AttributeError(f"{type(self._builder).__name__}.sort.{name}: sort takes a constraint method")

        def add_sorted(*args: Any, **kwargs: Any) -> Any:
            result = method(*args, **kwargs)
            self._builder._sort_index = len(self._builder._constraints) - 1
            return result

        return add_sorted
