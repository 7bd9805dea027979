"""Litestar's validation errors in plain words.

Litestar checks parameters and bodies with msgspec, whose messages are written for programmers
("Expected `str` matching regex '^(?:19[7-9]…'", "Expected `int` <= 100"). Here each one becomes a
sentence for the person who sent the request: the field, what it must be (read from the
handler's own types and their descriptions, never a regular expression or a type name), and the
value that was sent, e.g. "limit must be an integer from 1 to 100, got '500'".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec
import msgspec.inspect as mi
from litestar import Request
from litestar.exceptions import ValidationException
from litestar.handlers import BaseRouteHandler
from litestar.typing import FieldDefinition
from litestar.utils.scope.state import ScopeState

from orchestrator.errors import ErrorBody

BAD_REQUEST = "Bad request"
_MISSING = re.compile(r"Object missing required field `(?P<name>[^`]+)`")
_UNKNOWN = re.compile(r"Object contains unknown field `(?P<name>[^`]+)`")
_JSON_PROBLEM = re.compile(r"^(?:JSON is malformed: (?P<why>.*)|Input data was truncated)$")
# What msgspec names a JSON type, in words.
_TYPE_WORDS = {
    "int": "an integer",
    "float": "a number",
    "str": "text",
    "bool": "true or false",
    "object": "a JSON object",
    "array": "a list",
    "null": "null",
}
_SHOWN_CHARACTERS = 60


def plain_validation(request: Request[Any, Any, Any], exc: ValidationException) -> ErrorBody:
    """The body of a 400 for a request Litestar refused: one sentence per problem; `field` names
    the first one's parameter (dotted for a body field, e.g. params.fee_rate)."""
    entries = [e for e in (exc.extra if isinstance(exc.extra, list) else []) if isinstance(e, dict)]
    problems = [_problem(request, entry) for entry in entries]
    if not problems:
        return ErrorBody(BAD_REQUEST, "the request is not valid; see the API document at /schema")
    return ErrorBody(BAD_REQUEST, "; ".join(m for _, m in problems), problems[0][0])


def plain_detail(detail: str) -> str:
    """A Litestar or msgspec message without regular expressions or type names (the fallback for
    messages not tied to a parameter, e.g. a body that is not JSON)."""
    json_problem = _JSON_PROBLEM.match(detail)
    if json_problem is not None:
        why = json_problem.group("why")
        return f"the request body is not valid JSON: {why or 'it ends too early'}; send one object"
    words = re.sub(r"matching regex '.*'", "in the documented form", detail)
    words = re.sub(r"`(\w+)`", lambda m: _TYPE_WORDS.get(m.group(1), m.group(1)), words)
    return words.replace("Expected ", "expected ")


def _problem(request: Request[Any, Any, Any], entry: Mapping[str, Any]) -> tuple[str | None, str]:
    """(field, sentence) for one of Litestar's error entries."""
    key, message = str(entry.get("key") or ""), str(entry.get("message") or "")
    handler = request.scope.get("route_handler")
    parameters = _parameters(handler)
    if entry.get("source") == "body" or key == "data":
        path = [] if key in ("", "data") else key.split(".")
        return _body_problem(request, parameters.get("data"), path, message)
    field = parameters.get(key)
    expected = None if field is None else _words(_parameter_type(field))
    sent = request.query_params.get(key, request.scope.get("path_params", {}).get(key))
    return key, _sentence(key, expected, None if sent is None else _shown(sent), message)


def _body_problem(
    request: Request[Any, Any, Any], data: FieldDefinition | None, path: list[str], message: str
) -> tuple[str | None, str]:
    root = None if data is None else _type_info(data.annotation)
    missing, unknown = _MISSING.match(message), _UNKNOWN.match(message)
    if missing is not None:
        field = ".".join([*path, missing.group("name")])
        expected = _words(_walk(root, field.split(".")))
        return field, f"{field} is required" + (f": {expected}" if expected else "")
    if unknown is not None:
        field = ".".join([*path, unknown.group("name")])
        container = _walk(root, path)
        where = f"of {'.'.join(path)}" if path else "of the body"
        known = _field_names(container)
        fix = f"; use {', '.join(known)}" if known else ""
        return field, f"{field} is not a field {where}{fix}"
    named = ".".join(path) or None
    expected = _words(_walk(root, path))
    return named, _sentence(named or "the body", expected, _sent_in_body(request, path), message)


def _sentence(name: str, expected: str | None, sent: str | None, message: str) -> str:
    if expected is None:
        return f"{name}: {plain_detail(message)}"
    return f"{name} must be {expected}" + (f", got {sent}" if sent is not None else "")


def _parameters(handler: object) -> dict[str, FieldDefinition]:
    if not isinstance(handler, BaseRouteHandler):
        return {}
    return dict(handler.parsed_fn_signature.parameters)


def _type_info(annotation: Any) -> mi.Type | None:
    try:
        return mi.type_info(annotation)
    except (TypeError, ValueError):  # not a type msgspec knows (e.g. a Litestar State)
        return None


def _parameter_type(field: FieldDefinition) -> mi.Type | None:
    """The parameter's type with the bounds and description Litestar keeps beside it."""
    info = _type_info(field.annotation)
    rule = field.kwarg_definition
    if info is None or rule is None:
        return info
    bounds = {
        name: getattr(rule, name)
        for name in ("ge", "gt", "le", "lt", "min_length", "max_length", "pattern")
        if getattr(rule, name, None) is not None
    }
    inner = _without_none(info)
    if bounds and isinstance(inner, mi.IntType | mi.FloatType | mi.StrType):
        known = {k: v for k, v in bounds.items() if hasattr(inner, k)}
        inner = msgspec.structs.replace(inner, **known)
    description = getattr(rule, "description", None)
    if description:
        return mi.Metadata(inner, extra_json_schema={"description": description})
    return inner


def _without_none(info: mi.Type) -> mi.Type:
    if isinstance(info, mi.UnionType):
        kept = [t for t in info.types if not isinstance(t, mi.NoneType)]
        if len(kept) == 1:
            return kept[0]
    return info


def _walk(info: mi.Type | None, path: list[str]) -> mi.Type | None:
    """The type of the body field at `path` (struct fields by their JSON names)."""
    for name in path:
        struct = _struct(info)
        if struct is None:
            return None
        info = next((f.type for f in struct.fields if f.encode_name == name), None)
    return info


def _struct(info: mi.Type | None) -> mi.StructType | None:
    if isinstance(info, mi.Metadata):
        info = info.type
    if isinstance(info, mi.UnionType):
        info = next((t for t in info.types if isinstance(t, mi.StructType)), None)
    return info if isinstance(info, mi.StructType) else None


def _field_names(info: mi.Type | None) -> list[str]:
    struct = _struct(info)
    return [] if struct is None else [f.encode_name for f in struct.fields]


def _words(info: mi.Type | None) -> str | None:
    """What a value of this type must be, in words; None when it cannot be said."""
    if info is None:
        return None
    if isinstance(info, mi.Metadata):
        description = (info.extra_json_schema or {}).get("description")
        if description and isinstance(info.type, mi.StrType):
            return str(description)  # what the text means, where "text" or a pattern would not
        return _words(info.type)
    if isinstance(info, mi.UnionType):
        words = [_words(t) for t in info.types if not isinstance(t, mi.NoneType)]
        if None in words:
            return None
        null = any(isinstance(t, mi.NoneType) for t in info.types)
        return " or ".join(str(w) for w in words) + (", or null" if null else "")
    if isinstance(info, mi.LiteralType | mi.EnumType):
        values = info.values if isinstance(info, mi.LiteralType) else [m.value for m in info.cls]
        return "one of " + ", ".join(str(v) for v in values)
    if isinstance(info, mi.IntType | mi.FloatType):
        kind = "an integer" if isinstance(info, mi.IntType) else "a number"
        return kind + _bounds(info.ge, info.gt, info.le, info.lt)
    if isinstance(info, mi.StrType):
        if info.pattern is not None:
            return "text in the form the API document describes (/schema)"
        return "text" + _lengths(info.min_length, info.max_length)
    if isinstance(info, mi.StructType):
        return "a JSON object with the fields " + ", ".join(f.encode_name for f in info.fields)
    simple = {
        mi.BoolType: "true or false",
        mi.DictType: "a JSON object",
        mi.ListType: "a list",
        mi.DateTimeType: "an RFC 3339 date-time",
        mi.DateType: "a date (YYYY-MM-DD)",
    }
    return next((words for kind, words in simple.items() if isinstance(info, kind)), None)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _bounds(ge: float | None, gt: float | None, le: float | None, lt: float | None) -> str:
    if ge is not None and le is not None:
        return f" from {_number(ge)} to {_number(le)}"
    words = {"at least": ge, "above": gt, "at most": le, "below": lt}
    parts = [f"{word} {_number(bound)}" for word, bound in words.items() if bound is not None]
    return " " + " and ".join(parts) if parts else ""


def _lengths(shortest: int | None, longest: int | None) -> str:
    if shortest is not None and longest is not None:
        return f" of {shortest} to {longest} characters"
    if longest is not None:
        return f" of at most {longest} characters"
    return f" of at least {shortest} characters" if shortest is not None else ""


def _sent_in_body(request: Request[Any, Any, Any], path: list[str]) -> str | None:
    """The value the body holds at `path`, shown short (None when it cannot be read)."""
    raw = ScopeState.from_scope(request.scope).body
    if not isinstance(raw, bytes):
        return None
    try:
        value: Any = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None
    for name in path:
        if not isinstance(value, dict) or name not in value:
            return None
        value = value[name]
    return _shown(value)


def _shown(value: Any) -> str:
    """A sent value as the message quotes it: text in quotes, JSON otherwise, cut short."""
    shown = repr(value) if isinstance(value, str) else msgspec.json.encode(value).decode()
    return shown if len(shown) <= _SHOWN_CHARACTERS else shown[: _SHOWN_CHARACTERS - 1] + "…"
