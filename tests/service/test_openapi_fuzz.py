"""The OpenAPI document is complete, and a property-based fuzz run over it finds no 500.

The fuzzer is built on hypothesis from the served document itself: for every operation it draws
path parameters, query parameters and JSON bodies from the declared schemas, mixed with wrong
types, missing and unknown fields and random bytes, sends them with an admin's and a member's
token, and checks that every answer is a declared status with the error shape, never a 500.
"""

from __future__ import annotations

import json
import os
import re

import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

# hypothesis keeps caches in ./.hypothesis; this run needs none of them in the work tree
set_hypothesis_home_dir(tempfile.mkdtemp(prefix="hypothesis-"))

from hanami_torch.client import HanamiError
from hanami_torch.service.routes import ROUTES

from .helpers import PASSWORD, unique

pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")


@pytest.fixture(scope="module")
def document(admin):
    return admin.openapi()


def test_the_document_lists_every_route_with_everything(document):
    assert document["openapi"] == "3.1.0"
    for route in ROUTES:
        operation = document["paths"][route.path][route.method.lower()]
        assert operation["operationId"] == route.operation and operation["summary"]
        declared = {p["name"] for p in operation.get("parameters", [])}
        assert set(re.findall(r"{(\w+)}", route.path)) <= declared
        assert "500" in operation["responses"]
        success = [status for status in operation["responses"] if int(status) < 400]
        assert len(success) == 1
        if route.auth:
            assert {"401", "403"} <= set(operation["responses"]) and operation["security"]
        if route.body:
            assert "application/json" in operation["requestBody"]["content"]
    text = json.dumps(document)
    for reference in set(re.findall(r'"#/components/schemas/(\w+)"', text)):
        assert reference in document["components"]["schemas"]


def test_the_policy_names_only_real_operations():
    from hanami_torch.service.auth import Policy

    operations = {route.operation for route in ROUTES}
    policy = Policy.from_file()
    for role, allowed in policy.rules.items():
        assert allowed - {"*"} <= operations, (role, allowed - operations)


def _resolve(schema: dict, components: dict) -> dict:
    while "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[1]]
    return schema


ANY_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                     max_size=3), max_leaves=8)


def value_strategy(schema: dict, components: dict, depth: int = 0):
    """Values that fit ``schema`` most of the time and break it some of the time."""
    schema = _resolve(schema, components)
    types = schema.get("type", "object")
    types = types if isinstance(types, list) else [types]
    options = []
    for type_ in types:
        if "enum" in schema:
            options.append(st.sampled_from(schema["enum"]))
        elif type_ == "string":
            if "pattern" in schema:
                options.append(st.from_regex(f"^(?:{schema['pattern']})$", fullmatch=True))
            options.append(st.text(min_size=schema.get("minLength", 0), max_size=min(schema.get("maxLength", 40), 40)))
        elif type_ == "integer":
            low, high = schema.get("minimum"), schema.get("maximum")
            options.append(st.integers(int(low) - 1 if low is not None else -10, int(high) + 1 if high is not None
                                       else 10**6))
        elif type_ == "number":
            options.append(st.floats(allow_nan=False, allow_infinity=False))
        elif type_ == "boolean":
            options.append(st.booleans())
        elif type_ == "null":
            options.append(st.none())
        elif type_ == "array":
            items = schema.get("items", {})
            options.append(st.lists(value_strategy(items, components, depth + 1) if depth < 3 else ANY_JSON,
                                    max_size=3))
        else:
            options.append(object_strategy(schema, components, depth + 1) if depth < 3 else ANY_JSON)
    options.append(ANY_JSON)  # the wrong type, now and then
    return st.one_of(*options)


def object_strategy(schema: dict, components: dict, depth: int = 0):
    schema = _resolve(schema, components)
    properties = schema.get("properties", {})
    fields = {name: value_strategy(spec, components, depth) for name, spec in properties.items()}

    @st.composite
    def build(draw):
        keep = draw(st.sets(st.sampled_from(sorted(fields)))) if fields else set()
        required = set(schema.get("required", []))
        if draw(st.booleans()):
            keep |= required  # usually complete, sometimes not
        data = {name: draw(fields[name]) for name in sorted(keep)}
        if draw(st.integers(0, 9)) == 0:
            data[draw(st.text(min_size=1, max_size=8))] = draw(ANY_JSON)
        return data

    return build()


def request_strategy(path: str, method: str, operation: dict, components: dict):
    parameters = operation.get("parameters", [])

    @st.composite
    def build(draw):
        path_values, query = {}, {}
        for parameter in parameters:
            value = draw(value_strategy(parameter["schema"], components))
            text = value if isinstance(value, str) else json.dumps(value)
            if parameter["in"] == "path":
                path_values[parameter["name"]] = text or "x"
            elif draw(st.booleans()) or parameter["required"]:
                query[parameter["name"]] = text
        url = re.sub(r"{(\w+)}", lambda m: path_values[m.group(1)], path)
        body, headers = None, {}
        content = operation.get("requestBody", {}).get("content", {})
        if "application/json" in content:
            body = json.dumps(draw(object_strategy(content["application/json"]["schema"], components))).encode()
            headers["Content-Type"] = "application/json"
        elif content:
            body = draw(st.binary(max_size=300))
            headers["Content-Type"] = draw(st.sampled_from(list(content) + ["multipart/form-data; boundary=b"]))
        return method.upper(), url, query, body, headers

    return build()


@pytest.fixture(scope="module")
def fuzz_clients(server, admin):
    fuzz_admin = unique("fuzzadmin")
    admin.create_user(fuzz_admin, "Fuzz admin", PASSWORD, is_admin=True)
    project = unique("fuzz")
    admin.create_project(project, "Fuzz")
    member = unique("fuzzer")
    admin.create_user(member, "Fuzzer", PASSWORD)
    admin.set_member(project, member, "member")
    return [server.client(fuzz_admin, PASSWORD, project), server.client(member, PASSWORD)]


OPERATIONS = [(route.path, route.method.lower()) for route in ROUTES if route.operation != "delete_token"]


@pytest.mark.parametrize("path,method", OPERATIONS, ids=[f"{m} {p}" for p, m in OPERATIONS])
def test_fuzz_finds_no_server_error(document, fuzz_clients, path, method):
    operation = document["paths"][path][method]
    declared = {int(status) for status in operation["responses"]} | {405}

    @settings(max_examples=int(os.environ.get("HANAMI_FUZZ_EXAMPLES", "30")), deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                     HealthCheck.function_scoped_fixture])
    @given(request=request_strategy(path, method, operation, document["components"]["schemas"]),
           who=st.sampled_from([0, 1]))
    def check(request, who):
        verb, url, query, body, headers = request
        client = fuzz_clients[who]
        try:
            client.request(verb, url, query=query, body=body, headers=headers, raw=True)
        except HanamiError as error:
            assert error.status < 500, (verb, url, query, body, error)
            assert error.code and error.message  # the error shape
            assert error.status in declared or error.status == 404, (verb, url, error)

    check()
