"""The OpenAPI 3.1 document, written from the route declarations (nothing is listed twice)."""

from __future__ import annotations

import re

from .. import __version__
from .declarations import ERROR
from .errors import ERROR_DESCRIPTIONS
from .schema import Schema


def document(routes) -> dict:
    """Every route with its parameters, body, success response and error responses."""
    schemas: dict[str, Schema] = {}

    def use(schema: Schema) -> dict:
        for inner in schema.nested():
            schemas.setdefault(inner.name, inner)
        return {"$ref": f"#/components/schemas/{schema.name}"}

    error_ref = use(ERROR)
    paths: dict[str, dict] = {}
    for route in routes:
        operation: dict = {"operationId": route.operation, "summary": route.summary, "tags": [route.tag]}
        if route.description:
            operation["description"] = route.description
        parameters = [{"name": name, "in": "path", "required": True, "schema": spec.json_schema()}
                      for name, spec in route.params.items()]
        if route.query:
            parameters += [{"name": name, "in": "query", "required": spec.required, "schema": spec.json_schema()}
                           for name, spec in route.query.fields.items()]
        if parameters:
            operation["parameters"] = parameters
        if route.body:
            operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": use(route.body)}}}
        elif route.upload == "multipart/form-data":
            operation["requestBody"] = {"required": True, "content": {"multipart/form-data": {"schema": {
                "type": "object", "description": "mnist: parts images and labels; csv: part table",
                "properties": {part: {"type": "string", "contentMediaType": "application/octet-stream"}
                               for part in ("images", "labels", "table")}}}}}
        elif route.upload:
            operation["requestBody"] = {"required": True, "content": {route.upload: {
                "schema": {"type": "string", "contentMediaType": route.upload}}}}
        responses: dict = {}
        if route.websocket:
            responses["101"] = {"description": "switching to the WebSocket protocol"}
        elif route.download:
            responses[str(route.status)] = {"description": "the file", "content": {route.download: {
                "schema": {"type": "string", "contentMediaType": route.download}}}}
        elif route.response is not None:
            responses[str(route.status)] = {"description": route.response.description or route.summary,
                                            "content": {"application/json": {"schema": use(route.response)}}}
        elif route.operation == "openapi":
            responses["200"] = {"description": "this document", "content": {"application/json": {
                "schema": {"type": "object"}}}}
        else:
            responses["204"] = {"description": "done; no content"}
        for status in route.error_statuses() + [500]:
            responses[str(status)] = {"description": ERROR_DESCRIPTIONS[status],
                                      "content": {"application/json": {"schema": error_ref}}}
        operation["responses"] = responses
        if route.auth:
            operation["security"] = [{"bearer": []}]
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "hanami_torch service", "version": __version__,
                 "description": "Multi-user training and inference of Hanami networks. Errors are "
                                "always {\"error\": {\"code\", \"message\"}}. Lists take limit and offset."},
        "paths": paths,
        "components": {
            "schemas": {name: schema.json_schema() for name, schema in sorted(schemas.items())},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }


def path_parameters(path: str) -> list[str]:
    return re.findall(r"{(\w+)}", path)
