"""Request validation with JSON Schema 2020-12: the same schemas feed /openapi.json."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from server.errors import InvalidInput

_TYPE_NAMES = {
    "object": "对象", "array": "数组", "string": "字符串", "integer": "整数",
    "boolean": "布尔值", "number": "数字", "null": "空值",
}


def _path(parts: Iterable[Any]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "$"


def _message(error: ValidationError) -> str:
    kind, want = error.validator, error.validator_value
    if kind == "type":
        names = want if isinstance(want, list) else [want]
        return "类型应为" + "或".join(_TYPE_NAMES.get(n, n) for n in names)
    if kind == "required":
        return "必填"
    if kind == "additionalProperties":
        return "不允许的字段"
    if kind == "enum":
        return "取值无效，可选：" + "、".join(str(v) for v in want)
    if kind == "const":
        return f"取值应为 {want}"
    if kind in ("minLength", "maxLength"):
        return f"长度应{'至少' if kind == 'minLength' else '至多'}为 {want} 个字符"
    if kind in ("minItems", "maxItems"):
        return f"条目数应{'至少' if kind == 'minItems' else '至多'}为 {want}"
    if kind in ("minimum", "exclusiveMinimum"):
        return f"应{'不小于' if kind == 'minimum' else '大于'} {want}"
    if kind in ("maximum", "exclusiveMaximum"):
        return f"应{'不大于' if kind == 'maximum' else '小于'} {want}"
    if kind == "pattern" or kind == "format":
        return "格式不正确"
    if kind == "uniqueItems":
        return "不允许重复的条目"
    return "取值无效"


def field_errors(validator: Draft202012Validator, value: Any) -> dict[str, str]:
    """All problems of `value` as {field path: Chinese reason}, deterministic order."""
    fields: dict[str, str] = {}
    for error in sorted(validator.iter_errors(value), key=lambda e: list(map(str, e.absolute_path))):
        base = list(error.absolute_path)
        if error.validator == "required":
            missing = [n for n in error.validator_value if isinstance(error.instance, Mapping)
                       and n not in error.instance]
            for name in missing:
                fields.setdefault(_path([*base, name]), "必填")
        elif error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
            allowed = set(error.schema.get("properties", {}))
            for name in error.instance:
                if name not in allowed:
                    fields.setdefault(_path([*base, name]), "不允许的字段")
        else:
            fields.setdefault(_path(base), _message(error))
    return fields


class Schema:
    """A compiled request schema; `check(value)` raises InvalidInput with every bad field."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        Draft202012Validator.check_schema(schema)
        self.schema = dict(schema)
        self._validator = Draft202012Validator(self.schema)

    def check(self, value: Any) -> Any:
        fields = field_errors(self._validator, value)
        if fields:
            raise InvalidInput(fields=fields)
        return value


def coerce_query(schema: Mapping[str, Any], query: Mapping[str, list[bytes]]) -> dict[str, Any]:
    """Turn query-string values into the types the schema asks for (before validation)."""
    props: Mapping[str, Any] = schema.get("properties", {})
    out: dict[str, Any] = {}
    for name, values in query.items():
        text = values[-1].decode("utf-8", "replace")
        kind = props.get(name, {}).get("type")
        if kind == "integer":
            try:
                out[name] = int(text)
            except ValueError:
                out[name] = text
        elif kind == "boolean":
            out[name] = {"true": True, "false": False}.get(text, text)
        else:
            out[name] = text
    return out


# Small schema builders, so endpoint declarations stay short and uniform.
def obj(required: Mapping[str, Any] | None = None, optional: Mapping[str, Any] | None = None,
        **extra: Any) -> dict[str, Any]:
    """A closed object schema: unknown fields are refused."""
    properties = {**(required or {}), **(optional or {})}
    schema: dict[str, Any] = {"type": "object", "properties": properties,
                              "additionalProperties": False, **extra}
    if required:
        schema["required"] = list(required)
    return schema


def string(min_length: int = 1, max_length: int = 200, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "minLength": min_length, "maxLength": max_length, **extra}


def integer(minimum: int | None = None, maximum: int | None = None, **extra: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer", **extra}
    if minimum is not None:
        schema["minimum"] = minimum
    if maximum is not None:
        schema["maximum"] = maximum
    return schema


def array(items: Mapping[str, Any], min_items: int = 0, max_items: int = 1000,
          **extra: Any) -> dict[str, Any]:
    return {"type": "array", "items": dict(items), "minItems": min_items, "maxItems": max_items,
            **extra}


def enum(*values: str) -> dict[str, Any]:
    return {"type": "string", "enum": list(values)}


ID = string(1, 64, pattern="^[A-Za-z0-9_.:-]+$")
TIMESTAMP = {"type": "string", "format": "date-time", "maxLength": 40,
             "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)$"}
BOOL = {"type": "boolean"}
OPEN_OBJECT: dict[str, Any] = {"type": "object"}
