"""Fuzz campaign (issue 13, part 2): mutated example inputs through the CLI entry point.

Every example (``examples/*/``), every golden scenario (``plugins/*/tests/golden/*``), the
equivalence fixtures and the third-party example are mutated at random (strings get newlines,
``;``, braces, quotes, NUL, ...; values change type; keys are deleted, duplicated, renamed or
added, risky annotation keys included) and planned with ``routers plan -o json``, in process.
Asserted for every case:

- no exception escapes ``routers.cli.main`` (no traceback) and the exit code is 0, 1 or 2;
- nothing we do not own is lost: foreign marker fields planted in the live objects (top level,
  labels, annotations, ``spec`` and random nested mappings) survive in every changed object,
  unless they sat in a list entry that the input's ledger or ``managedRoutes`` names as ours;
  only objects we created are deleted;
- every annotation value we emit is in the safe sets (checked by an oracle written from
  ingress-nginx's validators, independent of the plugin's own check).

Bounded and reproducible: a fixed seed per scenario (crc32 of its name, plus
``ROUTERS_FUZZ_SEED``), no example database, ``ROUTERS_FUZZ_EXAMPLES`` cases per scenario
(default 25). The case count is reported in the terminal summary (``conftest.py``).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import string
import sys
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from routers import registry as registry_mod
from routers.cli import main
from routers.registry import Registry, _installed
from tests.conftest import THIRDPARTY, entry

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = int(os.environ.get("ROUTERS_FUZZ_EXAMPLES", "25"))
SEED = int(os.environ.get("ROUTERS_FUZZ_SEED", "0"))
"""Added to each scenario's seed (crc32 of its name): another value explores other mutations."""
EXIT_CODES = {0, 1, 2}
DOMAIN = "canary-routers.io/"
MARK_KEY = "xFuzzKeep"
MARK_ANNOTATION = "fuzz.example.com/keep"


@dataclass
class Stats:
    """What the campaign ran; read by the terminal summary hook in conftest.py."""

    cases: int = 0
    seconds: float = 0.0
    """Wall time spent in the CLI (writing the files included)."""
    cpu_seconds: float = 0.0
    exit_codes: Counter[int] = field(default_factory=Counter)
    scenarios: set[str] = field(default_factory=set)
    markers_checked: int = 0
    annotations_checked: int = 0


STATS = Stats()


# -- scenarios ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    name: str
    config: Any
    state: Any | None
    """None: a cleanup scenario (``cleanup.yaml``), planned with --cleanup."""
    keep_weights: bool
    live: list[Any]


def _load(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def _scenario(name: str, path: Path) -> Scenario:
    (config,) = _load(path / "routing.yaml")
    state: Any | None = None
    keep = False
    if (path / "cleanup.yaml").exists():
        cleanup = (_load(path / "cleanup.yaml") or [{}])[0] or {}
        keep = cleanup.get("restoreStable") is False
    else:
        (state,) = _load(path / "state.yaml")
    return Scenario(name, config, state, keep, _load(path / "live.yaml"))


SOURCES = {
    "examples": "examples/*",
    "golden": "plugins/*/tests/golden/*",
    "equivalence": "tests/contract/equivalence/*/*",
    "thirdparty": "tests/fixtures/thirdparty/example",
}
"""Where scenarios come from; each must yield at least one (a moved folder fails the suite)."""


def _name(source: str, path: Path) -> str:
    if source == "golden":
        return f"golden/{path.parents[2].name}/{path.name}"
    if source == "equivalence":
        return f"equivalence/{path.parent.name}/{path.name}"
    return f"{source}/{path.name}"


def scenarios() -> list[Scenario]:
    return [
        _scenario(_name(source, path), path)
        for source, pattern in SOURCES.items()
        for path in sorted(ROOT.glob(pattern))
        if (path / "routing.yaml").exists()
    ]


SCENARIOS = scenarios()


# -- mutations ----------------------------------------------------------------------------------

EVIL = [
    "\n", "\r\n", "\r", "\x00", "\t", " ", ";", "{", "}", "'", '"', "#", "\\", "`", "$",
    "\u2028", "\x85", "é", "/", ":", ".", "-", "_", "*", "A", "0",
]  # fmt: skip
EVIL_VALUES = [
    "",
    "x" * 300,
    "shadow\n",
    "web-canary\n",
    "shop\n",
    "beta\n",
    "canary.example.com\n",
    "x;\n}",
    'more_set_headers "X: y";\nadd_header X y;',
    "$host",
    "http://evil.example.com$request_uri",
    "a b",
    "{}",
    "[]",
    "true",
    "100",
]
RISKY_KEYS = [
    "configuration-snippet",
    "server-snippet",
    "nginx.ingress.kubernetes.io/server-snippet",
    "nginx.ingress.kubernetes.io/auth-url",
    "nginx.org/location-snippets",
    "allowUnsafeAnnotations",
    "additionalIngressAnnotations",
    "canaryIngressAnnotations",
    "canaryByCookie",
    "mirrorHost",
    "annotationPrefix",
    "owner",
    "namespace",
    "name",
    "canary-routers.io/managed",
    "canary-routers.io/owner",
    "app.kubernetes.io/managed-by",
]
SCALARS: list[Any] = [None, True, False, 0, -1, 1, 7, 100, 101, 10**7, 2**63, 1.5, [], {}]


def _walk(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    yield path, node
    if isinstance(node, dict):
        for k, v in list(node.items()):
            yield from _walk(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, (*path, i))


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    for part in path[:-1]:
        doc = doc[part]
    return doc


def _leaves(docs: list[Any]) -> tuple[list[str], list[str]]:
    keys: set[str] = set()
    values: set[str] = set()
    for doc in docs:
        for path, node in _walk(doc):
            if path and isinstance(path[-1], str):
                keys.add(path[-1])
            if isinstance(node, str):
                values.add(node)
    return sorted(keys), sorted(values)


@st.composite
def mutated(draw: st.DrawFn, doc: Any, keys: list[str], values: list[str]) -> Any:
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, 3))):
        nodes = list(_walk(doc))
        path, node = nodes[draw(st.integers(0, len(nodes) - 1))]
        op = draw(st.sampled_from(["string", "replace", "delete", "duplicate", "add", "rename"]))
        parent = _parent(doc, path) if path else None
        if op == "string" and isinstance(node, str) and path:
            evil = draw(st.sampled_from(EVIL))
            how = draw(st.sampled_from(["append", "prepend", "insert", "upper"]))
            at = draw(st.integers(0, len(node)))
            parent[path[-1]] = {
                "append": node + evil,
                "prepend": evil + node,
                "insert": node[:at] + evil + node[at:],
                "upper": node.upper(),
            }[how]
        elif op in ("replace", "string") and path:
            parent[path[-1]] = copy.deepcopy(
                draw(st.sampled_from([*SCALARS, *EVIL_VALUES, *values]))
            )
        elif op == "delete" and path:
            del parent[path[-1]]
        elif op == "duplicate" and isinstance(parent, list):
            parent.insert(path[-1], copy.deepcopy(node))
        elif op == "add" and isinstance(node, dict):
            key = draw(st.sampled_from([*RISKY_KEYS, *keys]))
            node[key] = copy.deepcopy(
                draw(st.sampled_from([*SCALARS, *EVIL_VALUES, *values, ["server-snippet"]]))
            )
        elif op == "rename" and isinstance(parent, dict) and isinstance(path[-1], str):
            new = path[-1] + draw(st.sampled_from(EVIL))
            parent[new] = parent.pop(path[-1])
    return doc


# -- foreign markers and the oracles ------------------------------------------------------------


@dataclass(frozen=True)
class Marker:
    doc: int
    path: tuple[Any, ...]
    """Where the marker sits in the input document: the mapping holding it."""
    key: str
    value: str


def plant(draw: st.DrawFn, docs: list[Any]) -> list[Marker]:
    """Foreign fields in places no plugin owns, plus a few in random nested mappings."""
    markers: list[Marker] = []
    for i, doc in enumerate(docs):
        if not isinstance(doc, dict):
            continue
        spots: list[tuple[tuple[Any, ...], str]] = [((), MARK_KEY)]
        meta = doc.get("metadata")
        if isinstance(meta, dict):
            for sub in ("annotations", "labels"):
                if meta.get(sub) is None:
                    meta[sub] = {}
                if isinstance(meta[sub], dict):
                    spots.append((("metadata", sub), MARK_ANNOTATION))
        if isinstance(doc.get("spec"), dict):
            nested = [p for p, n in _walk(doc["spec"], ("spec",)) if isinstance(n, dict)]
            for _ in range(draw(st.integers(0, 3))):
                spots.append((nested[draw(st.integers(0, len(nested) - 1))], MARK_KEY))
        for path, key in spots:
            holder = doc
            for part in path:
                holder = holder[part]
            if key in holder:
                continue
            value = f"kept-{i}-{len(markers)}"
            holder[key] = value
            markers.append(Marker(i, path, key, value))
    return markers


def _found(node: Any, key: str, value: str) -> bool:
    return any(isinstance(n, dict) and n.get(key) == value for _, n in _walk(node))


def _ours(obj: Any) -> bool:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    labels = meta.get("labels") if isinstance(meta, dict) else None
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    return (
        isinstance(labels, dict)
        and labels.get("app.kubernetes.io/managed-by") == "canary-routers"
        and isinstance(annotations, dict)
        and f"{DOMAIN}owner" in annotations
    )


def _owned_names(obj: Any, config: Any) -> set[str]:
    """Every string (value or key) in the object's ledger annotations, plus managedRoutes."""
    names: set[str] = set()
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    for key, raw in (annotations or {}).items() if isinstance(annotations, dict) else ():
        if isinstance(key, str) and key.startswith(DOMAIN) and isinstance(raw, str):
            with contextlib.suppress(ValueError):
                for path, node in _walk(json.loads(raw)):
                    names.update(p for p in path if isinstance(p, str))
                    if isinstance(node, str):
                        names.add(node)
    for _, node in _walk(config):
        if isinstance(node, dict) and isinstance(node.get("managedRoutes"), list):
            for entry in node["managedRoutes"]:
                if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                    names.add(entry["name"])
    return names


def _identity(entry: dict[Any, Any]) -> set[str]:
    """The strings that name a list entry: its own and its sub-mappings' string fields
    (a route's ``name``, a destination's ``destination.subset``), not those of nested lists."""
    out = {v for v in entry.values() if isinstance(v, str)}
    for value in entry.values():
        if isinstance(value, dict):
            out.update(v for v in value.values() if isinstance(v, str))
    return out


def _in_owned_entry(obj: Any, path: tuple[Any, ...], owned: set[str]) -> bool:
    node = obj
    for part in path:
        node = node[part]
        if isinstance(part, int) and isinstance(node, dict) and _identity(node) & owned:
            return True
    return False


# ingress-nginx's validators (parser/validators.go), written out independently of the plugin.
_BASIC = frozenset(string.ascii_letters + string.digits + "-._~/:")
_REGEX = _BASIC | frozenset("^$[](){}*+?|&=\\")
_NEVER = frozenset(";{}'\"#\\`")
_BASIC_NAMES = {"canary-by-header", "canary-by-header-value", "canary-by-cookie", "canary"}


def _unsafe_value(key: str, value: Any) -> str | None:
    if not isinstance(value, str):
        return f"not a string: {value!r}"
    if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or c in "\u2028\u2029" for c in value):
        return "control character"
    name = key.rpartition("/")[2]
    if name in _BASIC_NAMES | {"canary-weight", "canary-weight-total"}:
        return None if set(value) <= _BASIC else "outside BasicChars"
    if name == "canary-by-header-pattern":
        return None if set(value) <= _REGEX else "outside IsValidRegex"
    bad = set(value) & _NEVER
    return f"contains {''.join(sorted(bad))!r}" if bad else None


def _allowed_unsafe(config: Any) -> set[str]:
    """Keys the (mutated) config passes verbatim: any string under allowUnsafeAnnotations."""
    out: set[str] = set()
    for _, node in _walk(config):
        if isinstance(node, dict) and isinstance(node.get("allowUnsafeAnnotations"), list):
            for key in node["allowUnsafeAnnotations"]:
                if isinstance(key, str):
                    out.update({key, key.rpartition("/")[2]})
    return out


def _ref(obj: Any, namespace: str) -> tuple[str, str, str, str] | None:
    if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict):
        return None
    meta = obj["metadata"]
    group = str(obj.get("apiVersion", "")).rpartition("/")[0]
    return (
        group,
        str(obj.get("kind")),
        str(meta.get("namespace") or namespace),
        str(meta.get("name")),
    )


def _describe(ref: tuple[str, str, str, str]) -> str:
    """How the CLI names an object (``Ingress.networking.k8s.io shop/web-canary``)."""
    group, kind, namespace, name = ref
    return f"{kind}.{group} {namespace}/{name}" if group else f"{kind} {namespace}/{name}"


def _annotations(obj: Any) -> dict[Any, Any]:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    found = meta.get("annotations") if isinstance(meta, dict) else None
    return found if isinstance(found, dict) else {}


# -- running one case ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    config: Any
    state: Any | None
    keep_weights: bool
    live: list[Any]
    markers: list[Marker]


@st.composite
def cases(draw: st.DrawFn, scenario: Scenario) -> Case:
    keys, values = _leaves([scenario.config, scenario.state, *scenario.live])
    # Live objects alone most often: a broken config or state stops at validation (exit 1),
    # while mutated live objects reach the planners.
    which = draw(
        st.sampled_from(
            [
                {"live"},
                {"live"},
                {"live"},
                {"config"},
                {"state"},
                {"config", "live"},
                {"state", "live"},
            ]
        )
    )
    config = scenario.config
    state = scenario.state
    live = scenario.live
    if "config" in which:
        config = draw(mutated(config, keys, values))
    if "state" in which and state is not None:
        state = draw(mutated(state, keys, values))
    if "live" in which:
        live = draw(mutated(live, keys, values))
    live = copy.deepcopy(live)
    markers = plant(draw, live)
    return Case(config, state, scenario.keep_weights, live, markers)


def _dump(path: Path, docs: list[Any]) -> str:
    """JSON documents (a YAML subset the CLI reads alike), written much faster than YAML."""
    path.write_text("---\n".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    return str(path)


def run_cli(case: Case, workdir: Path) -> tuple[int, str, str]:
    args = ["plan", "--config", _dump(workdir / "routing.yaml", [case.config])]
    if case.state is None:
        args += ["--cleanup"] + (["--keep-weights"] if case.keep_weights else [])
    else:
        args += ["--state", _dump(workdir / "state.yaml", [case.state])]
    args += ["-f", _dump(workdir / "live.yaml", case.live), "-o", "json"]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(args)
        except BaseException as exc:  # the assertion: nothing escapes main
            raise AssertionError(f"exception escaped routers.cli.main: {exc!r}") from exc
    return rc, out.getvalue(), err.getvalue()


def check(case: Case, rc: int, out: str, err: str, stats: Stats = STATS) -> None:
    assert rc in EXIT_CODES, (rc, err)
    assert "Traceback" not in err, err
    if rc != 0:
        assert out == "", "nothing is printed on stdout when planning fails"
        return
    namespace = "default"
    if isinstance(case.config, dict) and isinstance(case.config.get("namespace"), str):
        namespace = case.config["namespace"]
    result = json.loads(out)
    inputs: dict[Any, list[int]] = {}
    for i, doc in enumerate(case.live):
        inputs.setdefault(_ref(doc, namespace), []).append(i)
    for line in err.splitlines():
        if line.startswith("delete: "):
            deleted = [
                i
                for ref, idx in inputs.items()
                if ref is not None and line == f"delete: {_describe(ref)}"
                for i in idx
            ]
            assert deleted, f"deleted an object that was not in the input: {line}"
            assert all(_ours(case.live[i]) for i in deleted), f"deleted a foreign object: {line}"
    allowed = _allowed_unsafe(case.config)
    for obj in result["items"]:
        ref = _ref(obj, namespace)
        before = case.live[inputs[ref][0]] if len(inputs.get(ref, [])) == 1 else None
        old = _annotations(before) if before is not None else {}
        for key, value in _annotations(obj).items():
            if (
                str(key).startswith(DOMAIN)
                or key in allowed
                or str(key).rpartition("/")[2] in allowed
            ):
                continue
            if key in old and old[key] == value:
                continue  # not ours: it was there before
            stats.annotations_checked += 1
            problem = _unsafe_value(str(key), value)
            assert problem is None, f"{ref}: emitted annotation {key}={value!r}: {problem}"
        if before is None or _ours(before):
            continue
        owned = _owned_names(before, case.config) | _owned_names(obj, case.config)
        index = inputs[ref][0]
        for marker in case.markers:
            if marker.doc != index:
                continue
            stats.markers_checked += 1
            if _found(obj, marker.key, marker.value):
                continue
            assert _in_owned_entry(before, marker.path, owned), (
                f"{ref}: foreign field {marker.key}={marker.value!r} at "
                f"{'/'.join(map(str, marker.path))} was lost"
            )


@pytest.fixture(scope="module", autouse=True)
def registry_with_thirdparty() -> Iterator[None]:
    """The installed plugins plus the third-party example, as the CLI's default registry."""
    sys.path.insert(0, str(THIRDPARTY))
    saved = registry_mod._default
    registry_mod._default = Registry(
        lambda: [
            *_installed(),
            entry("configmap", "routers_example_configmap:ConfigMapPlugin", "example", "0.3.0"),
        ],  # type: ignore[list-item]
        disabled=(),
    )
    try:
        yield
    finally:
        registry_mod._default = saved
        sys.path.remove(str(THIRDPARTY))


def campaign(
    name: str,
    strategy: st.SearchStrategy[Any],
    examples: int,
    stats: Stats,
    execute: Callable[[Any], tuple[int, Callable[[], None]]],
) -> int:
    """Run ``examples`` cases of one scenario, seeded by its name; return how many ran.

    ``execute`` runs one case and returns its exit code and the oracle to call afterwards (so
    the measured time is the product's, not the oracles')."""
    ran = 0

    @seed(zlib.crc32(name.encode()) + SEED)
    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    @given(strategy)
    def one(case: Any) -> None:
        nonlocal ran
        started, cpu = time.perf_counter(), time.process_time()
        code, oracle = execute(case)
        stats.seconds += time.perf_counter() - started
        stats.cpu_seconds += time.process_time() - cpu
        ran += 1
        stats.cases += 1
        stats.exit_codes[code] += 1
        oracle()

    stats.scenarios.add(name)
    one()
    return ran


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_fuzz_cli(scenario: Scenario, record_property: Any) -> None:
    def execute(case: Case) -> tuple[int, Callable[[], None]]:
        with tempfile.TemporaryDirectory(prefix="routers-fuzz-") as tmp:
            rc, out, err = run_cli(case, Path(tmp))
        return rc, lambda: check(case, rc, out, err)

    ran = campaign(scenario.name, cases(scenario), EXAMPLES, STATS, execute)
    record_property("fuzz_cases", ran)
    assert ran >= min(EXAMPLES, 10), f"only {ran} cases ran"


def test_unmutated_scenarios_plan_cleanly() -> None:
    """The campaign starts from inputs that plan: each scenario as it is exits 0."""
    with tempfile.TemporaryDirectory(prefix="routers-fuzz-") as tmp:
        for scenario in SCENARIOS:
            live = copy.deepcopy(scenario.live)
            case = Case(scenario.config, scenario.state, scenario.keep_weights, live, [])
            rc, out, err = run_cli(case, Path(tmp))
            assert rc == 0, (scenario.name, err)
            check(case, rc, out, err)
    for source in SOURCES:
        assert any(s.name.startswith(f"{source}/") for s in SCENARIOS), f"no {source} scenario"


# -- the oracles can fail ---------------------------------------------------------------------------

_VS = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "VirtualService",
    "metadata": {"name": "web", "namespace": "shop", "annotations": {}},
    "spec": {"http": [{"name": "a", "route": []}, {"name": "b", "route": []}]},
}


def _oracle_case(ledger: str | None = None) -> Case:
    live = copy.deepcopy(_VS)
    if ledger is not None:
        live["metadata"]["annotations"][f"{DOMAIN}managed"] = ledger
    live["spec"]["http"][1][MARK_KEY] = "kept-0-0"
    marker = Marker(0, ("spec", "http", 1), MARK_KEY, "kept-0-0")
    return Case({"namespace": "shop"}, {}, False, [live], [marker])


def _output(*objs: Any) -> str:
    return json.dumps({"kind": "List", "items": list(objs)})


def test_oracle_flags_a_lost_foreign_field() -> None:
    case = _oracle_case()
    after = copy.deepcopy(case.live[0])
    del after["spec"]["http"][1]
    with pytest.raises(AssertionError, match="foreign field xFuzzKeep='kept-0-0' at spec/http/1"):
        check(case, 0, _output(after), "")


def test_oracle_accepts_the_loss_of_what_the_ledger_names() -> None:
    case = _oracle_case(ledger='{"routes":["b"]}')
    after = copy.deepcopy(case.live[0])
    del after["spec"]["http"][1]
    check(case, 0, _output(after), "")


def test_oracle_flags_an_unsafe_emitted_annotation() -> None:
    case = _oracle_case()
    after = copy.deepcopy(case.live[0])
    after["metadata"]["annotations"]["nginx.ingress.kubernetes.io/load-balance"] = "ewma;"
    with pytest.raises(AssertionError, match="emitted annotation .*load-balance='ewma;'"):
        check(case, 0, _output(after), "")
    after["metadata"]["annotations"] = {"nginx.ingress.kubernetes.io/canary-by-header": "X A"}
    with pytest.raises(AssertionError, match="outside BasicChars"):
        check(case, 0, _output(after), "")


def test_oracle_flags_a_foreign_delete_and_bad_exit_codes() -> None:
    case = _oracle_case()
    deleted = "delete: VirtualService.networking.istio.io shop/web"
    with pytest.raises(AssertionError, match="deleted a foreign object"):
        check(case, 0, _output(), deleted)
    with pytest.raises(AssertionError):
        check(case, 3, "", "error: conflict")
