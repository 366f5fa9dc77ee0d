"""Answer forms built from a question's JSON schema, and the answer read back from the form.

boolean -> yes/no buttons; enum -> buttons (or a select when long); string, number, integer
-> an input; object -> one field per property (nested); anything else -> a JSON text area.
Optional values (``anyOf [T, null]``) may be left empty. Field names are ``v`` for the whole
answer and ``v.prop.sub`` for properties. The value read back is then checked against the
schema by :func:`legato.ask.check_answer`, like any other answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from legato.errors import InvalidAnswer

ROOT = "v"
MAX_BUTTONS = 6


@dataclass
class Field:
    name: str
    kind: str  # boolean | enum | string | number | integer | object | json
    label: str
    required: bool = True
    options: list[tuple[str, str]] = field(default_factory=list)  # (json value, label)
    children: list[Field] = field(default_factory=list)
    description: str | None = None
    default: str | None = None

    @property
    def buttons(self) -> bool:
        """A single choice answered by clicking (no other field beside it)."""
        return self.kind in ("boolean", "enum") and len(self.options) <= MAX_BUTTONS


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        node: Any = root
        for part in ref[2:].split("/"):
            node = node.get(part, {}) if isinstance(node, dict) else {}
        merged = dict(node) if isinstance(node, dict) else {}
        merged.update({k: v for k, v in schema.items() if k != "$ref"})
        return _resolve(merged, root)
    if "allOf" in schema and len(schema["allOf"]) == 1:  # pydantic wraps refs with defaults
        merged = _resolve(schema["allOf"][0], root)
        merged.update({k: v for k, v in schema.items() if k != "allOf"})
        return merged
    return schema


def _optional(schema: dict[str, Any], root: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """(the schema without ``null``, whether null is allowed)."""
    options = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(options, list):
        rest = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
        if len(rest) == 1 and len(rest) < len(options):
            inner = dict(_resolve(rest[0], root))
            for k in ("title", "description", "default"):
                if k in schema:
                    inner.setdefault(k, schema[k])
            return inner, True
    return schema, False


def build(
    schema: dict[str, Any],
    *,
    name: str = ROOT,
    label: str = "Answer",
    required: bool = True,
    root: dict[str, Any] | None = None,
) -> Field:
    root = schema if root is None else root
    schema = _resolve(schema, root)
    schema, nullable = _optional(schema, root)
    label = str(schema.get("title") or label)
    desc = schema.get("description")
    default = json.dumps(schema["default"]) if "default" in schema else None
    common: dict[str, Any] = {
        "name": name,
        "label": label,
        "required": required and not nullable,
        "description": str(desc) if desc else None,
        "default": default,
    }
    kind = schema.get("type")
    if "enum" in schema or "const" in schema:
        values = schema.get("enum", [schema.get("const")])
        opts = [(json.dumps(v), v if isinstance(v, str) else json.dumps(v)) for v in values]
        return Field(kind="enum", options=opts, **common)
    if kind == "boolean":
        return Field(kind="boolean", options=[("true", "Yes"), ("false", "No")], **common)
    if kind in ("string", "number", "integer"):
        return Field(kind=str(kind), **common)
    if kind == "object" and isinstance(schema.get("properties"), dict):
        needed = set(schema.get("required", []))
        children = [
            build(sub, name=f"{name}.{prop}", label=prop, required=prop in needed, root=root)
            for prop, sub in schema["properties"].items()
            if isinstance(sub, dict)
        ]
        return Field(kind="object", children=children, **common)
    return Field(kind="json", **common)


def _one(f: Field, form: dict[str, str]) -> tuple[bool, Any]:
    """(present, value) of one field from the submitted form."""
    if f.kind == "object":
        out: dict[str, Any] = {}
        for child in f.children:
            present, value = _one(child, form)
            if present:
                out[child.name.rsplit(".", 1)[-1]] = value
        return True, out
    raw = form.get(f.name)
    if raw is None or (raw == "" and f.kind != "string"):
        return (True, None) if not f.required and raw == "" else (False, None)
    if raw == "" and not f.required:
        return True, None
    try:
        if f.kind in ("boolean", "enum", "json"):
            return True, json.loads(raw)
        if f.kind == "integer":
            return True, int(raw)
        if f.kind == "number":
            return True, float(raw)
    except ValueError:
        expected = {"json": "JSON", "integer": "a whole number", "number": "a number"}
        raise InvalidAnswer(
            f"{f.label}: expected {expected.get(f.kind, 'one of the choices')}, got {raw!r}"
        ) from None
    return True, raw


def read(f: Field, form: dict[str, str]) -> Any:
    """The answer a submitted form gives; InvalidAnswer when a field is missing or unreadable."""
    present, value = _one(f, form)
    if not present:
        raise InvalidAnswer(f"{f.label}: an answer is needed")
    return value
