"""Declarations of request and response shapes, written once and used twice: to validate what
arrives (:meth:`Schema.validate`, :meth:`Schema.validate_query`) and to write the OpenAPI
document (:meth:`Schema.json_schema`).

A :class:`Schema` is a named object of :class:`Field` s.  Validation is strict: unknown keys,
missing required keys, wrong JSON types (``true`` is not an integer, ``1.0`` is), strings outside
their length or pattern and numbers outside their range all raise
:class:`~hanami_torch.service.errors.Unprocessable` naming the field and what was expected.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import Unprocessable

_JSON_TYPES = ("string", "integer", "number", "boolean", "array", "object")


@dataclass(frozen=True)
class Field:
    """One value of a request or response.

    ``type`` is a JSON-schema type; ``items`` describes array elements (a Field or a Schema),
    ``schema`` the shape of an object value.  ``nullable`` admits ``null``.
    """

    type: str
    description: str = ""
    required: bool = True
    default: Any = None
    pattern: str | None = None
    min_length: int | None = None
    max_length: int | None = None
    minimum: float | None = None
    maximum: float | None = None
    enum: tuple | None = None
    items: Any = None
    schema: Schema | None = None
    nullable: bool = False
    format: str | None = None

    def __post_init__(self):
        if self.type not in _JSON_TYPES:
            raise ValueError(f"unknown field type {self.type!r}")

    def optional(self, default: Any = None) -> Field:
        """The same field, not required, with ``default`` filled in when absent."""
        return Field(**{**self.__dict__, "required": False, "default": default})

    def json_schema(self) -> dict:
        out: dict[str, Any] = {"type": [self.type, "null"] if self.nullable else self.type}
        if self.description:
            out["description"] = self.description
        for key, value in (
            ("pattern", self.pattern),
            ("minLength", self.min_length),
            ("maxLength", self.max_length),
            ("minimum", self.minimum),
            ("maximum", self.maximum),
            ("format", self.format),
        ):
            if value is not None:
                out[key] = value
        if self.enum is not None:
            out["enum"] = list(self.enum)
        if not self.required and self.default is not None:
            out["default"] = self.default
        if self.items is not None:
            out["items"] = self.items.json_schema() if isinstance(self.items, Field) else _ref(self.items)
        if self.schema is not None:
            return {**_ref(self.schema), **({"description": self.description} if self.description else {})}
        return out

    def check(self, value: Any, where: str) -> Any:
        """Returns ``value`` if it fits, raises Unprocessable naming ``where`` otherwise."""
        if value is None:
            if self.nullable:
                return None
            raise Unprocessable(f"{where} must not be null; expected {self._expected()}")
        if self.schema is not None:
            return self.schema.validate(value, where)
        if not _has_type(value, self.type):
            raise Unprocessable(f"{where} must be {self._expected()}, got {_type_name(value)}")
        if self.type == "number" and not math.isfinite(value):
            raise Unprocessable(f"{where} must be a finite number")
        if self.type == "integer":
            value = int(value)
        if self.type == "string":
            if self.min_length is not None and len(value) < self.min_length:
                raise Unprocessable(f"{where} must have at least {self.min_length} characters")
            if self.max_length is not None and len(value) > self.max_length:
                raise Unprocessable(f"{where} must have at most {self.max_length} characters")
            if self.pattern is not None and not re.fullmatch(self.pattern, value):
                raise Unprocessable(f"{where} must match {self.pattern}{self._hint()}")
        if self.type in ("integer", "number"):
            if self.minimum is not None and value < self.minimum:
                raise Unprocessable(f"{where} must be at least {self.minimum:g}")
            if self.maximum is not None and value > self.maximum:
                raise Unprocessable(f"{where} must be at most {self.maximum:g}")
        if self.enum is not None and value not in self.enum:
            raise Unprocessable(f"{where} must be one of {', '.join(map(str, self.enum))}")
        if self.type == "array":
            if self.min_length is not None and len(value) < self.min_length:
                raise Unprocessable(f"{where} must have at least {self.min_length} elements")
            if self.max_length is not None and len(value) > self.max_length:
                raise Unprocessable(f"{where} must have at most {self.max_length} elements")
            if self.items is not None:
                return [self.items.check(item, f"{where}[{i}]") if isinstance(self.items, Field)
                        else self.items.validate(item, f"{where}[{i}]") for i, item in enumerate(value)]
        return value

    def parse_text(self, text: str, where: str) -> Any:
        """Converts a query or path string to this field's type, then checks it."""
        if self.type == "integer":
            if not re.fullmatch(r"-?\d{1,18}", text):
                raise Unprocessable(f"{where} must be an integer, got {text[:40]!r}")
            return self.check(int(text), where)
        if self.type == "number":
            try:
                number = float(text)
            except ValueError:
                raise Unprocessable(f"{where} must be a number, got {text[:40]!r}") from None
            return self.check(number, where)
        if self.type == "boolean":
            if text not in ("true", "false"):
                raise Unprocessable(f"{where} must be true or false, got {text[:40]!r}")
            return text == "true"
        return self.check(text, where)

    def _expected(self) -> str:
        return {"integer": "an integer", "array": "an array", "object": "an object"}.get(self.type, f"a {self.type}")

    def _hint(self) -> str:
        return f" ({self.description})" if self.description else ""


@dataclass(frozen=True)
class Schema:
    """A named JSON object of fields; ``name`` becomes ``#/components/schemas/<name>``."""

    name: str
    fields: dict[str, Field] = field(default_factory=dict)
    description: str = ""
    #: True for response shapes whose extra keys are allowed (e.g. free-form stats)
    open: bool = False

    def validate(self, data: Any, where: str = "body") -> dict:
        """Checks a decoded JSON object; returns a new dict with defaults filled in."""
        if not isinstance(data, dict):
            raise Unprocessable(f"{where} must be a JSON object, got {_type_name(data)}")
        unknown = sorted(set(data) - set(self.fields))
        if unknown and not self.open:
            raise Unprocessable(
                f"{where} has unknown field(s) {', '.join(map(repr, unknown))}; allowed: "
                f"{', '.join(self.fields) or 'none'}"
            )
        out = {}
        for name, spec in self.fields.items():
            if name in data:
                out[name] = spec.check(data[name], f"{where}.{name}")
            elif spec.required:
                raise Unprocessable(f"{where} lacks the required field {name!r} ({spec._expected()})")
            else:
                out[name] = spec.default
        return out

    def validate_query(self, query, where: str = "query") -> dict:
        """Checks query-string parameters (a multidict of strings); each may appear once."""
        unknown = sorted(set(query) - set(self.fields))
        if unknown:
            raise Unprocessable(
                f"unknown query parameter(s) {', '.join(map(repr, unknown))}; allowed: "
                f"{', '.join(self.fields) or 'none'}"
            )
        out = {}
        for name, spec in self.fields.items():
            values = query.getall(name, []) if hasattr(query, "getall") else ([query[name]] if name in query else [])
            if len(values) > 1:
                raise Unprocessable(f"query parameter {name!r} is given {len(values)} times; give it once")
            if values:
                out[name] = spec.parse_text(values[0], f"{where} parameter {name!r}")
            elif spec.required:
                raise Unprocessable(f"the query parameter {name!r} is required")
            else:
                out[name] = spec.default
        return out

    def json_schema(self) -> dict:
        out: dict[str, Any] = {
            "type": "object",
            "properties": {name: spec.json_schema() for name, spec in self.fields.items()},
            "additionalProperties": self.open,
        }
        required = [name for name, spec in self.fields.items() if spec.required]
        if required:
            out["required"] = required
        if self.description:
            out["description"] = self.description
        return out

    def nested(self) -> list[Schema]:
        """This schema and every schema it refers to, depth first, without repeats."""
        found: dict[str, Schema] = {}

        def visit(schema: Schema):
            if schema.name in found:
                return
            found[schema.name] = schema
            for spec in schema.fields.values():
                for inner in (spec.schema, spec.items):
                    if isinstance(inner, Schema):
                        visit(inner)
                    elif isinstance(inner, Field):
                        for deeper in (inner.schema, inner.items):
                            if isinstance(deeper, Schema):
                                visit(deeper)

        visit(self)
        return list(found.values())


def page_of(item: Schema) -> Schema:
    """The paginated list shape that every list endpoint returns."""
    return Schema(
        f"{item.name}Page",
        {
            "items": Field("array", items=item),
            "total": Field("integer", "number of items across all pages", minimum=0),
            "limit": Field("integer", minimum=1),
            "offset": Field("integer", minimum=0),
        },
        f"one page of {item.name} items, newest first",
    )


def _ref(schema: Schema) -> dict:
    return {"$ref": f"#/components/schemas/{schema.name}"}


def _has_type(value: Any, type_: str) -> bool:
    if type_ == "string":
        return isinstance(value, str)
    if type_ == "boolean":
        return isinstance(value, bool)
    if type_ == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if type_ == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if type_ == "array":
        return isinstance(value, list)
    return isinstance(value, dict)


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array",
            dict: "an object", type(None): "null"}.get(type(value), type(value).__name__)
