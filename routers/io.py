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


def load_documents(paths: Iterable[str]) -> list[dict[str, Any]]:
    """Every object in every file (multi-document YAML, JSON, ``kind: List`` expanded)."""
    out: list[dict[str, Any]] = []
    for path in paths:
        text, source = _read(path)
        for i, doc in enumerate(load_text(text, source)):
            if not isinstance(doc, dict) or "kind" not in doc or "metadata" not in doc:
                raise ConfigError(
                    [
                        Problem(
                            f"document[{i}]", "not a Kubernetes object (needs kind and metadata)"
                        )
                    ],
                    source=source,
                )
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
