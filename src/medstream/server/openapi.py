"""The OpenAPI document of the REST operations, made from the same `Collection`s as the app's routes
(server/rest.py): every path and method served, its parameters, body and answer, the bearer scheme of the
calls that need a token, and each error status a call answers with the error body (server/errors.py)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field, TypeAdapter
from pydantic.json_schema import JsonSchemaMode

from medstream.server.rest import Collection, Operation

REF_TEMPLATE = "#/components/schemas/{model}"
BEARER = "bearerAuth"

ERROR_DESCRIPTIONS = {
    400: "Invalid request: a bad body, path or query parameter (`details` lists each, located under `body`, "
    "`path` or `query`), or a request the data does not allow",
    401: "Missing, invalid or expired token (or wrong login or password)",
    403: "Authenticated, but not allowed to do this",
    404: "No such entity, or one you may not read",
    409: "A stale or missing `rev`, an id or login that exists, or a deleted entity",
    413: "A body, batch, list or filter over its bound",
    429: "Too many failed logins for this login: retry after `Retry-After` seconds",
    503: "The database is unavailable, or the server is shutting down",
}


class Error(BaseModel):
    """Every error's body."""

    error: str = Field(description="A stable code: validation_error, unauthorized, not_found, conflict...")
    message: str = Field(description="What is wrong, for people")
    details: list[dict[str, Any]] | None = Field(None, description="Per-field problems, when there are any")
    requestId: str | None = Field(
        None, description="The request's id, as in its `X-Request-ID` answer header and the server's log lines"
    )


def openapi_document(*, title: str, version: str, description: str, collections: Sequence[Collection]) -> Any:
    """The OpenAPI 3.1 document of `collections`."""
    operations = [(collection, operation) for collection in collections for operation in collection.operations]
    schemas, definitions = _schemas([Error, *(t for _c, op in operations for t in _types(op))])
    document: dict[str, Any] = get_openapi(title=title, version=version, description=description, routes=[])
    paths: dict[str, dict[str, Any]] = document.setdefault("paths", {})
    for collection, operation in operations:
        path = collection.prefix + operation.path
        paths.setdefault(path, {})[operation.method.lower()] = _operation(collection.tag, operation, schemas)
    document["components"] = {
        "schemas": dict(sorted(definitions.items())),
        "securitySchemes": {BEARER: {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
    }
    return document


def _types(operation: Operation) -> list[Any]:
    found = [*([operation.answer] if operation.answer is not None else []), *(a for _s, a in operation.other_answers)]
    if operation.body is not None:
        found.append(operation.body.type)
    return found


def _schemas(types: Sequence[Any]) -> tuple[dict[Hashable, Any], dict[str, Any]]:
    """The schema of each type (a `$ref` for a model), and the definitions they refer to."""
    unique = list(dict.fromkeys(types))
    mode: JsonSchemaMode = "validation"  # one schema per model: an entity is sent back as it was received
    inputs = [(t, mode, TypeAdapter(t)) for t in unique]
    by_key, definitions = TypeAdapter.json_schemas(inputs, ref_template=REF_TEMPLATE)
    return {key: schema for (key, _mode), schema in by_key.items()}, dict(definitions.get("$defs", {}))


def _json(schema: Any) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _operation(tag: str, operation: Operation, schemas: dict[Hashable, Any]) -> dict[str, Any]:
    described: dict[str, Any] = {"tags": [tag], "summary": operation.summary, "operationId": operation.operation_id}
    if operation.description:
        described["description"] = operation.description
    parameters = [
        *_parameters(operation.path_params, "path"),
        *_parameters(operation.query, "query"),
        *(
            {"name": h.name, "in": "header", "description": h.description, "schema": {"type": "string"}}
            for h in operation.headers
        ),
    ]
    if parameters:
        described["parameters"] = parameters
    if operation.body is not None:
        body = {"required": operation.body.required, "content": _json(schemas[operation.body.type])}
        if operation.body.description:
            body["description"] = operation.body.description
        described["requestBody"] = body
    success: dict[str, Any] = {"description": "OK" if operation.status == 200 else "Done, nothing to answer"}
    if operation.answer is not None:
        success["content"] = _json(schemas[operation.answer])
    responses: dict[str, Any] = {str(operation.status): success}
    for status, answer in operation.other_answers:
        responses[str(status)] = {"description": ERROR_DESCRIPTIONS[status], "content": _json(schemas[answer])}
    for status in operation.errors:
        responses[str(status)] = {"description": ERROR_DESCRIPTIONS[status], "content": _json(schemas[Error])}
        if status == 429:
            retry = {"description": "Seconds to wait", "schema": {"type": "integer"}}
            responses[str(status)]["headers"] = {"Retry-After": retry}
    described["responses"] = dict(sorted(responses.items()))
    if operation.authenticated:
        described["security"] = [{BEARER: []}]
    return described


def _parameters(model: type[BaseModel] | None, where: str) -> list[dict[str, Any]]:
    if model is None:
        return []
    properties = model.model_json_schema(by_alias=True, ref_template=REF_TEMPLATE)["properties"]
    found = []
    for name, field in model.model_fields.items():
        alias = field.alias or name
        schema = dict(properties[alias])
        parameter = {"name": alias, "in": where, "required": where == "path" or field.is_required(), "schema": schema}
        if "description" in schema:
            parameter["description"] = schema.pop("description")
        found.append(parameter)
    return found


__all__ = ["Error", "openapi_document"]
