"""A small validator for route specs against the official Gateway API CRDs.

The e2e tier applies golden outputs to a real API server; this catches the same class of
mistakes (a field the CRD lacks, a limit, a pattern, the CEL rules our output can trip) in the
unit tier, whenever the official CRD files are on disk (``crds.py`` of the e2e tier fetches
them into ``${ROUTERS_E2E_CACHE:-~/.cache/canary-routers}/crds/<set>/``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import re2
import yaml

_OPTS = re2.Options()
_OPTS.log_errors = False


def crd_dir(crd_set: str) -> Path:
    root = Path(os.environ.get("ROUTERS_E2E_CACHE") or Path.home() / ".cache" / "canary-routers")
    return root / "crds" / crd_set


@cache
def schema_for(crd_set: str, kind: str, version: str) -> dict[str, Any] | None:
    plural = kind.lower() + "s"
    path = crd_dir(crd_set) / f"gateway.networking.k8s.io_{plural}.yaml"
    if not path.exists():
        return None
    doc = yaml.safe_load(path.read_text())
    for v in doc["spec"]["versions"]:
        if v["name"] == version and v.get("served"):
            schema: dict[str, Any] = v["schema"]["openAPIV3Schema"]
            return schema
    raise AssertionError(f"{crd_set}: {kind} {version} is not served")


def _check(schema: Mapping[str, Any], value: Any, path: str, out: list[str]) -> None:
    kind = schema.get("type")
    if kind == "object":
        if not isinstance(value, Mapping):
            out.append(f"{path}: expected an object")
            return
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key in schema.get("required", []):
            if key not in value:
                out.append(f"{path}.{key}: required")
        for key, item in value.items():
            if props is not None and key in props:
                _check(props[key], item, f"{path}.{key}", out)
            elif isinstance(extra, Mapping):
                _check(extra, item, f"{path}.{key}", out)
            elif not schema.get("x-kubernetes-preserve-unknown-fields"):
                out.append(f"{path}.{key}: unknown field (strict field validation rejects it)")
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            out.append(f"{path}: too many properties")
    elif kind == "array":
        if not isinstance(value, list):
            out.append(f"{path}: expected a list")
            return
        if len(value) > schema.get("maxItems", len(value)):
            out.append(f"{path}: {len(value)} items, max {schema['maxItems']}")
        if len(value) < schema.get("minItems", 0):
            out.append(f"{path}: {len(value)} items, min {schema['minItems']}")
        keys = schema.get("x-kubernetes-list-map-keys")
        if keys:
            seen = [tuple(i.get(k) for k in keys) for i in value if isinstance(i, Mapping)]
            if len(seen) != len(set(seen)):
                out.append(f"{path}: duplicate list-map keys {keys}")
        for i, item in enumerate(value):
            _check(schema.get("items", {}), item, f"{path}[{i}]", out)
    elif kind == "string":
        if not isinstance(value, str):
            out.append(f"{path}: expected a string, got {value!r}")
            return
        if len(value) > schema.get("maxLength", len(value)) or len(value) < schema.get(
            "minLength", 0
        ):
            out.append(f"{path}: length {len(value)} out of range")
        if "pattern" in schema and not re2.search(schema["pattern"], value, options=_OPTS):
            out.append(f"{path}: {value!r} does not match {schema['pattern']}")
        if "enum" in schema and value not in schema["enum"]:
            out.append(f"{path}: {value!r} not in {schema['enum']}")
    elif kind == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            out.append(f"{path}: expected an integer, got {value!r}")
            return
        if value > schema.get("maximum", value) or value < schema.get("minimum", value):
            out.append(f"{path}: {value} out of range")
    elif kind == "boolean" and not isinstance(value, bool):
        out.append(f"{path}: expected a boolean")


def _cel(kind: str, spec: Mapping[str, Any], experimental: bool, out: list[str]) -> None:
    """The CEL rules of the route CRDs that generated rules can violate (specs §2.7)."""
    rules = spec.get("rules") or []
    if kind in ("HTTPRoute", "GRPCRoute"):
        default = 1 if kind == "HTTPRoute" else 0
        total = sum(len(r["matches"]) if "matches" in r else default for r in rules)
        if total > 128:
            out.append(f"spec.rules: {total} matches in total, max 128")
    names = [r["name"] for r in rules if "name" in r]
    if experimental and len(names) != len(set(names)):
        out.append(f"spec.rules: rule names must be unique, got {names}")

    def ref_ok(ref: Mapping[str, Any], where: str) -> None:
        if (
            ref.get("group", "") == ""
            and ref.get("kind", "Service") == "Service"
            and "port" not in ref
        ):
            out.append(f"{where}: port is required for a Service reference")

    def filters_ok(filters: list[Any], where: str) -> None:
        for t in (
            "CORS",
            "RequestHeaderModifier",
            "ResponseHeaderModifier",
            "RequestRedirect",
            "URLRewrite",
        ):
            if sum(f.get("type") == t for f in filters) > 1:
                out.append(f"{where}: {t} filter repeated")
        for k, f in enumerate(filters):
            mirror = f.get("requestMirror")
            field = {
                "RequestMirror": "requestMirror",
                "RequestHeaderModifier": "requestHeaderModifier",
                "ResponseHeaderModifier": "responseHeaderModifier",
                "URLRewrite": "urlRewrite",
                "RequestRedirect": "requestRedirect",
                "ExtensionRef": "extensionRef",
                "CORS": "cors",
            }.get(f["type"])
            if field and field not in f:
                out.append(f"{where}[{k}]: {field} required for type {f['type']}")
            if isinstance(mirror, Mapping):
                ref_ok(mirror.get("backendRef") or {}, f"{where}[{k}].requestMirror.backendRef")
                if "percent" in mirror and "fraction" in mirror:
                    out.append(f"{where}[{k}]: percent and fraction are exclusive")
                frac = mirror.get("fraction")
                if isinstance(frac, Mapping) and frac["numerator"] > frac.get("denominator", 100):
                    out.append(f"{where}[{k}]: numerator > denominator")

    for i, rule in enumerate(rules):
        where = f"spec.rules[{i}]"
        refs = rule.get("backendRefs") or []
        filters = rule.get("filters") or []
        filters_ok(filters, f"{where}.filters")
        every = list(filters)
        for j, ref in enumerate(refs):
            ref_ok(ref, f"{where}.backendRefs[{j}]")
            filters_ok(ref.get("filters") or [], f"{where}.backendRefs[{j}].filters")
            every.extend(ref.get("filters") or [])
        if refs and any("requestRedirect" in f for f in filters):
            out.append(f"{where}: RequestRedirect with backendRefs")
        rewrites = any(
            ((f.get("urlRewrite") or f.get("requestRedirect") or {}).get("path") or {}).get("type")
            == "ReplacePrefixMatch"
            for f in every
        )
        matches = rule.get("matches") or []
        if rewrites and (
            len(matches) != 1 or (matches[0].get("path") or {}).get("type") != "PathPrefix"
        ):
            out.append(f"{where}: ReplacePrefixMatch needs exactly one PathPrefix match")
        for k, m in enumerate(matches):
            p = m.get("path")
            if isinstance(p, Mapping) and p.get("type") in ("Exact", "PathPrefix"):
                v = p["value"]
                bad = (
                    not v.startswith("/")
                    or any(s in v for s in ("//", "/./", "/../", "%2f", "%2F", "#"))
                    or v.endswith(("/..", "/."))
                )
                if bad:
                    out.append(f"{where}.matches[{k}].path: {v!r} violates the path rules")


def problems(crd_set: str, obj: Mapping[str, Any]) -> list[str] | None:
    """Everything the API server would refuse in ``obj``'s spec; None when the CRD is absent."""
    version = obj["apiVersion"].rpartition("/")[2]
    schema = schema_for(crd_set, obj["kind"], version)
    if schema is None:
        return None
    out: list[str] = []
    _check(schema["properties"]["spec"], obj.get("spec") or {}, "spec", out)
    for key, value in ((obj.get("metadata") or {}).get("annotations") or {}).items():
        if not isinstance(value, str):
            out.append(f"metadata.annotations.{key}: must be a string")
    _cel(obj["kind"], obj.get("spec") or {}, "experimental" in crd_set, out)
    return out
