"""Reference paths (``$.a.b[0]``, ``$$.Map.Item.Value``), payload templates and ResultPath."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from groves.asl.errors import StatesError, UnsupportedDefinition

TOKEN = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]|\['([^']*)'\]")


def _tokens(path: str) -> list[str | int]:
    rest, tokens = path[1:], []
    while rest:
        match = TOKEN.match(rest)
        if not match:
            raise UnsupportedDefinition(
                f"path {path!r}: only $.field, $['field'] and [n] steps are supported"
            )
        name, index, quoted = match.groups()
        tokens.append(int(index) if index is not None else name if name is not None else quoted)
        rest = rest[match.end() :]
    return tokens


def get_path(data: Any, path: str, context: Any = None) -> Any:
    """The value at a reference path; ``$$`` paths read the context object."""
    root, rest = (context, path[1:]) if path.startswith("$$") else (data, path)
    if not rest.startswith("$"):
        raise UnsupportedDefinition(f"path {path!r} must start with $")
    value = root
    for token in _tokens(rest):
        try:
            value = value[token]
        except (KeyError, IndexError, TypeError) as exc:
            raise StatesError(
                "States.Runtime", f"the path {path!r} matches nothing in {json.dumps(root)[:500]}"
            ) from exc
    return value


def path_exists(data: Any, path: str) -> bool:
    try:
        get_path(data, path)
    except StatesError:
        return False
    return True


def set_path(data: Any, path: str | None, value: Any) -> Any:
    """Apply a ResultPath: ``None`` keeps the input, ``$`` replaces it, ``$.a.b`` sets a field."""
    if path is None:
        return data
    tokens = _tokens(path)
    if not tokens:
        return value
    result = copy.deepcopy(data) if isinstance(data, dict) else {}
    node = result
    for token in tokens[:-1]:
        if not isinstance(node.get(token), dict):
            node[token] = {}
        node = node[token]
    node[tokens[-1]] = value
    return result


def evaluate(template: Any, data: Any, context: Any) -> Any:
    """Evaluate a payload template (Parameters, ItemSelector, ResultSelector)."""
    if isinstance(template, list):
        return [evaluate(item, data, context) for item in template]
    if not isinstance(template, dict):
        return template
    result = {}
    for key, value in template.items():
        if key.endswith(".$"):
            if not isinstance(value, str) or not value.startswith("$"):
                raise UnsupportedDefinition(
                    f"{key}: {value!r}: only paths are supported, not intrinsic functions"
                )
            result[key[:-2]] = get_path(data, value, context)
        else:
            result[key] = evaluate(value, data, context)
    return result


def select(data: Any, path: Any) -> Any:
    """Apply an InputPath or OutputPath (``None`` gives ``{}``)."""
    if path is None:
        return {}
    return get_path(data, path)
