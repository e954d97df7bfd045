"""The OpenAPI 3 document, generated from the marshmallow schemas and the Flask routes.

Each view carries its description through `@doc(...)`; `build_spec` walks the
app's URL map, so a route cannot exist without appearing in the document (a test
checks both directions).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Flask
from marshmallow import Schema

from protocol import PROTOCOL_VERSION
from schemas.wire import ErrorSchema

F = TypeVar("F", bound=Callable[..., Any])

# Every signed route: refused signatures and standing, a body (any request may send
# one) too slow, too large or of another type, and `429 busy`.
_SIGNED_ERRORS = (401, 403, 404, 408, 413, 415, 429)
# Every route with a body: bad JSON or schema, slow, too large, wrong type.
_BODY_ERRORS = (400, 408, 413, 415)


def doc(
    summary: str,
    *,
    response: type[Schema] | None = None,
    status: int = 200,
    request: type[Schema] | None = None,
    query: Sequence[dict[str, Any]] = (),
    errors: Sequence[int] = (),
    signed: bool = True,
    path: Mapping[str, dict[str, Any]] | None = None,
    binary_request: bool = False,
    binary_response: bool = False,
) -> Callable[[F], F]:
    """Describe a view for the OpenAPI document. `query` holds parameter objects; `path`
    the schema of path parameters other than a plain string; `binary_request` /
    `binary_response`: the body is application/octet-stream."""

    def wrap(view: F) -> F:
        view.fieldsync_openapi = {  # type: ignore[attr-defined]
            "summary": summary,
            "response": response,
            "status": status,
            "request": request,
            "query": list(query),
            "errors": sorted(
                set(errors)
                | (set(_SIGNED_ERRORS) if signed else set())
                | (set(_BODY_ERRORS) if request is not None or binary_request else set())
            ),
            "signed": signed,
            "path": dict(path or {}),
            "binary_request": binary_request,
            "binary_response": binary_response,
        }
        return view

    return wrap


def query_int(name: str, description: str, minimum: int, maximum: int) -> dict[str, Any]:
    return {
        "in": "query",
        "name": name,
        "required": False,
        "description": description,
        "schema": {"type": "integer", "minimum": minimum, "maximum": maximum},
    }


def openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule)


_BINARY = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}


def _json(schema: type[Schema] | None, description: str) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description}
    if schema is not None:
        out["content"] = {"application/json": {"schema": schema.__name__.removesuffix("Schema")}}
    return out


def build_spec(app: Flask) -> dict[str, Any]:
    spec = APISpec(
        title="fieldsync sync server",
        version="1",
        openapi_version="3.0.3",
        plugins=[MarshmallowPlugin()],
        info={"description": f"API v1 of {PROTOCOL_VERSION}; normative text: docs/PROTOCOL.md."},
    )
    spec.components.security_scheme(
        "httpsig",
        {
            "type": "apiKey",
            "in": "header",
            "name": "Signature",
            "description": "RFC 9421 signature, label fs, ed25519, over @method, @target-uri"
            " and content-digest, with created, keyid and nonce (docs/PROTOCOL.md, HTTP API).",
        },
    )
    seen: set[type[Schema]] = set()

    def register(schema: type[Schema] | None) -> None:
        if schema is not None and schema not in seen:
            seen.add(schema)
            spec.components.schema(schema.__name__.removesuffix("Schema"), schema=schema)

    register(ErrorSchema)
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        info = getattr(app.view_functions[rule.endpoint], "fieldsync_openapi", None)
        if info is None:
            raise RuntimeError(f"route {rule.rule} has no @doc: describe it for the OpenAPI doc")
        register(info["response"])
        register(info["request"])
        params = [
            {
                "in": "path",
                "name": arg,
                "required": True,
                "schema": info["path"].get(arg, {"type": "string"}),
            }
            for arg in sorted(rule.arguments)
        ] + info["query"]
        success = (
            {"description": "success", "content": _BINARY}
            if info["binary_response"]
            else _json(info["response"], "success")
        )
        op: dict[str, Any] = {
            "summary": info["summary"],
            "operationId": rule.endpoint.replace(".", "_"),
            "responses": {str(info["status"]): success}
            | {str(code): _json(ErrorSchema, "refused") for code in info["errors"]},
        }
        if params:
            op["parameters"] = params
        if info["request"] is not None:
            op["requestBody"] = {"required": True, **_json(info["request"], "JSON body")}
        elif info["binary_request"]:
            op["requestBody"] = {"required": True, "description": "bytes", "content": _BINARY}
        if info["signed"]:
            op["security"] = [{"httpsig": []}]
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            paths.setdefault(openapi_path(rule.rule), {})[method.lower()] = op
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    return spec.to_dict()
