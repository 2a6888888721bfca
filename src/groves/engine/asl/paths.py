"""Reference paths (``$.a.b[0]``, ``$$.Map.Item.Value``), payload templates and ResultPath."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from groves.engine.asl.errors import StatesError, UnsupportedDefinition

TOKEN = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]|\['([^']*)'\]")


def check_path(path: Any, where: str) -> None:
    """Refuse, when the definition is loaded, a path this engine cannot follow."""
    if not isinstance(path, str) or not path.startswith("$"):
        raise UnsupportedDefinition(f"{where}: {path!r} is not a path starting with $")
    _tokens(path[1:] if path.startswith("$$") else path)


def check_template(template: Any, where: str) -> None:
    """Refuse, when the definition is loaded, a payload template with intrinsic functions
    (``States.Format(...)`` and the like) or paths this engine cannot follow."""
    if isinstance(template, list):
        for item in template:
            check_template(item, where)
    elif isinstance(template, dict):
        for key, value in template.items():
            if key.endswith(".$"):
                if not isinstance(value, str) or not value.startswith("$"):
                    raise UnsupportedDefinition(
                        f"{where}.{key}: {value!r}: only paths are supported, "
                        "not intrinsic functions"
                    )
                check_path(value, f"{where}.{key}")
            else:
                check_template(value, f"{where}.{key}")


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
    """Apply a ResultPath: ``None`` keeps the input, ``$`` replaces it, ``$.a.b`` sets a field
    (creating missing objects on the way). A path through a value that is not an object, or
    an index a list does not have, fails with ``States.ResultPathMatchFailure``."""
    if path is None:
        return data
    tokens = _tokens(path)
    if not tokens:
        return value
    result = copy.deepcopy(data)
    node = result
    for depth, token in enumerate(tokens):
        last = depth == len(tokens) - 1
        if isinstance(token, int) and isinstance(node, list) and token < len(node):
            if last:
                node[token] = value
            node = node[token]
        elif isinstance(token, str) and isinstance(node, dict):
            if last:
                node[token] = value
            node = node.setdefault(token, {})
        else:
            raise StatesError(
                "States.ResultPathMatchFailure",
                f"the ResultPath {path!r} cannot be applied to the state's input: "
                f"{json.dumps(data)[:300]}",
            )
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
            result[key[:-2]] = get_path(data, value, context)
        else:
            result[key] = evaluate(value, data, context)
    return result


def select(data: Any, path: Any) -> Any:
    """Apply an InputPath or OutputPath (``None`` gives ``{}``)."""
    if path is None:
        return {}
    return get_path(data, path)
