"""Reading our YAML/JSON inputs and manifest files strictly.

PyYAML silently keeps the last of two duplicate keys; a duplicated ``weight:`` in a state file
would then be applied without a word. We refuse duplicates instead, naming file and line.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from routers.errors import ConfigError, Problem

__all__ = ["dump_yaml", "load_documents", "load_one"]


class _StrictLoader(yaml.SafeLoader):
    pass


def _mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r}",
                key_node.start_mark,
            )
        seen[key] = 1
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_text(text: str, source: str) -> list[Any]:
    try:
        docs = [d for d in yaml.load_all(text, Loader=_StrictLoader) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(
            [Problem(where, f"invalid YAML/JSON: {problem}")], source=source
        ) from None
    out: list[Any] = []
    for doc in docs:
        if (
            isinstance(doc, dict)
            and doc.get("kind") == "List"
            and isinstance(doc.get("items"), list)
        ):
            out.extend(doc["items"])
        else:
            out.append(doc)
    return out


def _read(path: str) -> tuple[str, str]:
    if path == "-":
        import sys

        return sys.stdin.read(), "<stdin>"
    try:
        return Path(path).read_text(encoding="utf-8"), path
    except OSError as exc:
        raise ConfigError([Problem("", f"cannot read file: {exc.strerror}")], source=path) from None


def _object_problem(doc: Any) -> str | None:
    """What makes ``doc`` something the API server would never return (None: nothing).

    Plugins read live objects as plain dicts and may rely on this much of their shape; the rest
    (``spec``, ``status``) is theirs to read defensively.
    """
    if not isinstance(doc, dict) or "kind" not in doc or "metadata" not in doc:
        return "not a Kubernetes object (needs kind and metadata)"
    if not isinstance(doc["kind"], str) or not isinstance(doc.get("apiVersion", ""), str):
        return "kind and apiVersion must be strings"
    meta = doc["metadata"]
    if not isinstance(meta, dict):
        return "metadata must be a mapping"
    for key in ("name", "namespace", "uid", "resourceVersion"):
        if key in meta and not isinstance(meta[key], str):
            return f"metadata.{key} must be a string"
    for key in ("labels", "annotations"):
        values = meta.get(key)
        if values is not None and (
            not isinstance(values, dict)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in values.items())
        ):
            return f"metadata.{key} must map strings to strings"
    return None


def load_documents(paths: Iterable[str]) -> list[dict[str, Any]]:
    """Every object in every file (multi-document YAML, JSON, ``kind: List`` expanded)."""
    out: list[dict[str, Any]] = []
    for path in paths:
        text, source = _read(path)
        for i, doc in enumerate(load_text(text, source)):
            problem = _object_problem(doc)
            if problem is not None:
                raise ConfigError([Problem(f"document[{i}]", problem)], source=source)
            out.append(doc)
    return out


def load_one(path: str) -> Any:
    text, source = _read(path)
    docs = load_text(text, source)
    if len(docs) != 1:
        raise ConfigError(
            [Problem("", f"expected exactly one document, found {len(docs)}")], source=source
        )
    return docs[0]


def dump_yaml(docs: Iterable[Any]) -> str:
    return yaml.safe_dump_all(list(docs), sort_keys=False, default_flow_style=False)
