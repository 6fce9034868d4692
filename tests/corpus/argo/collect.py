"""Collect the Argo corpus: every published Rollout whose traffic routing targets our plugins.

Maintenance tool (not run by the tests). Reads two fetched repositories read-only with git
(bare snapshots are fine) and writes ``cases/<id>/`` here:

* ``source.yaml``: repository, commit, path (and YAML block of a Markdown file, or document of a
  multi-document file) of the Rollout, where each live object came from, and every other place
  that publishes the same Rollout;
* ``rollout.yaml``: the Rollout as published, adapted only where a documentation block elides
  fields with a line of ``...`` (that line is dropped);
* ``live.yaml``: the live objects that ship beside it: the same file, the same directory (the
  getting-started guides, the plugin's examples and chainsaw resources), or, for a Markdown
  block, the nearest block of the same page that defines the named object.

Hand-maintained files are never touched: ``expect.yaml`` (accepted, or refused with Argo's
reason) and ``written.yaml`` (minimal live objects we wrote where none ship, each annotated).

    python tests/corpus/argo/collect.py --argo DIR --gatewayapi DIR
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
CASES = HERE / "cases"
REPOS = {
    "argo": ("argoproj/argo-rollouts", "argo-rollouts"),
    "gatewayapi": ("argoproj-labs/rollouts-plugin-trafficrouter-gatewayapi", "gatewayapi-plugin"),
}
OURS = {"istio", "nginx", "smi", "traefik", "plugins", "managedRoutes", "maxTrafficWeight"}
OUR_PLUGINS = {"argoproj-labs/gatewayAPI"}
LIVE_KINDS = {
    "Service",
    "VirtualService",
    "DestinationRule",
    "Ingress",
    "TrafficSplit",
    "HTTPRouteGroup",
    "HTTPRoute",
    "GRPCRoute",
    "TraefikService",
    "TCPRoute",
    "TLSRoute",
}
SKIP_PREFIXES = ("manifests/", "pkg/apis/", "CHANGELOG")
_BLOCK = re.compile(r"```ya?ml[^\n]*\n(.*?)```", re.S)
_ELIDED = re.compile(r"^\s*\.\.\.\s*$")


@dataclass
class Doc:
    obj: dict[str, Any]
    path: str
    where: str
    """``document N`` or ``block N`` (and ``document N`` inside it)."""
    block: int | None = None


@dataclass
class Case:
    repo: str
    short: str
    commit: str
    rollout: Doc
    live: list[Doc] = field(default_factory=list)
    also: list[str] = field(default_factory=list)

    index: int | None = None
    """Position among the file's in-scope Rollouts, when it holds several."""

    @property
    def id(self) -> str:
        stem = re.sub(r"[^A-Za-z0-9]+", "-", self.rollout.path.rsplit(".", 1)[0]).strip("-")
        extra = "" if self.rollout.block is None else f"-block{self.rollout.block}"
        extra += "" if self.index is None else f"-{self.index + 1}"
        return f"{self.short}--{stem}{extra}".lower()


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, timeout=60
    ).stdout


def documents(text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Every mapping document, one at a time (a broken one, e.g. a template, is skipped)."""
    parts = re.split(r"^---[^\n]*$", text, flags=re.M)
    for i, part in enumerate(parts):
        cleaned = "\n".join(line for line in part.splitlines() if not _ELIDED.match(line))
        try:
            doc = yaml.safe_load(_dedent(cleaned))
        except yaml.YAMLError:
            continue
        if isinstance(doc, dict) and "kind" in doc:
            yield i, doc


def _dedent(text: str) -> str:
    """README blocks wrap manifests in ``kubectl apply -f - <<EOF`` (indented): unwrap them."""
    lines = text.splitlines()
    if any(line.strip().startswith("kubectl apply") for line in lines):
        lines = [ln for ln in lines if not ln.strip().startswith(("kubectl", "EOF"))]
    body = [ln for ln in lines if ln.strip()]
    indent = min((len(ln) - len(ln.lstrip()) for ln in body), default=0)
    return "\n".join(ln[indent:] for ln in lines)


def file_docs(repo: Path, path: str) -> list[Doc]:
    text = git(repo, "show", f"HEAD:{path}")
    if path.endswith(".md"):
        out = []
        for b, m in enumerate(_BLOCK.finditer(text)):
            block = "\n".join(ln for ln in m.group(1).splitlines() if not ln.startswith("Here is"))
            out += [Doc(d, path, f"block {b}, document {i}", b) for i, d in documents(block)]
        return out
    return [Doc(d, path, f"document {i}") for i, d in documents(text)]


def in_scope(rollout: dict[str, Any]) -> bool:
    routing = (((rollout.get("spec") or {}).get("strategy") or {}).get("canary") or {}).get(
        "trafficRouting"
    )
    if not isinstance(routing, dict) or not routing:
        return False
    if not set(routing) <= OURS or not set(routing) & {
        "istio",
        "nginx",
        "smi",
        "traefik",
        "plugins",
    }:
        return False
    return set(routing.get("plugins") or {}) <= OUR_PLUGINS


def out_of_scope_reason(rollout: dict[str, Any]) -> str | None:
    routing = (((rollout.get("spec") or {}).get("strategy") or {}).get("canary") or {}).get(
        "trafficRouting"
    )
    if not isinstance(routing, dict) or not routing:
        return None
    other = sorted(set(routing) - OURS) + sorted(set(routing.get("plugins") or {}) - OUR_PLUGINS)
    return ", ".join(other) if other else None


def siblings(repo: Path, path: str, files: Sequence[str]) -> list[str]:
    """Files whose objects ship with ``path``: its directory, for guides and examples."""
    directory = path.rsplit("/", 1)[0]
    shared = (
        path.startswith(("docs/getting-started/", "examples/"))
        and directory.count("/") >= 1
        and not path.startswith(("examples/traffic-routing", "examples/istio"))
    ) or "/resources/" in path
    if not shared:
        return [path]
    return [
        f
        for f in files
        if f.rsplit("/", 1)[0] == directory and re.search(r"\.(ya?ml|md)$", f) and f != path
    ] + [path]


def live_for(case_docs: list[Doc], rollout: Doc) -> list[Doc]:
    """Objects of the kinds we read, each (kind, name) once, from the nearest place."""

    def distance(d: Doc) -> tuple[int, int, int]:
        # The same file first (for a Markdown block: the nearest block, earlier ones after
        # later ones at the same distance, since a page shows objects before changing them),
        # then manifest files of the directory, then other pages' blocks.
        other_file = 0 if d.path == rollout.path else 1
        markdown = 1 if d.block is not None and other_file else 0
        if rollout.block is None or d.block is None or other_file:
            return (other_file, markdown, 0)
        gap = d.block - rollout.block
        return (0, 0, abs(gap) * 2 + (1 if gap < 0 else 0))

    chosen: dict[tuple[str, str], Doc] = {}
    for d in sorted(case_docs, key=distance):
        meta = d.obj.get("metadata") or {}
        if d.obj.get("kind") not in LIVE_KINDS or not isinstance(meta.get("name"), str):
            continue  # other kinds, and skeletons without a name
        chosen.setdefault((str(d.obj["kind"]), str(meta["name"])), d)
    return sorted(chosen.values(), key=lambda d: (d.path, d.where))


def collect(repo_dirs: dict[str, Path]) -> tuple[list[Case], list[tuple[str, str]]]:
    cases: dict[str, Case] = {}
    outside: list[tuple[str, str]] = []
    for key, directory in repo_dirs.items():
        repo, short = REPOS[key]
        commit = git(directory, "rev-parse", "HEAD").strip()
        files = [f for f in git(directory, "ls-tree", "-r", "--name-only", "HEAD").split("\n") if f]
        for path in files:
            if not re.search(r"\.(ya?ml|md)$", path) or path.startswith(SKIP_PREFIXES):
                continue
            docs = file_docs(directory, path)
            for d in docs:
                if d.obj.get("kind") != "Rollout":
                    continue
                reason = out_of_scope_reason(d.obj)
                if not in_scope(d.obj):
                    if reason:
                        outside.append((f"{repo}:{path} ({d.where})", reason))
                    continue
                identity = json.dumps(d.obj, sort_keys=True)
                if identity in cases:
                    cases[identity].also.append(f"{repo}:{path} ({d.where})")
                    continue
                pool: list[Doc] = []
                for f in siblings(directory, path, files):
                    pool += docs if f == path else file_docs(directory, f)
                case = Case(repo, short, commit, d)
                case.live = live_for(pool, d)
                cases[identity] = case
    out = list(cases.values())
    for case in out:
        same = [
            c
            for c in out
            if (c.repo, c.rollout.path, c.rollout.block)
            == (case.repo, case.rollout.path, case.rollout.block)
        ]
        if len(same) > 1:
            case.index = same.index(case)
    return out, outside


def write(case: Case) -> None:
    target = CASES / case.id
    target.mkdir(parents=True, exist_ok=True)
    source = {
        "repo": case.repo,
        "commit": case.commit,
        "path": case.rollout.path,
        "where": case.rollout.where,
        "live": [{"path": d.path, "where": d.where} for d in case.live],
        "also": case.also,
    }
    (target / "source.yaml").write_text(yaml.safe_dump(source, sort_keys=False))
    (target / "rollout.yaml").write_text(yaml.safe_dump(case.rollout.obj, sort_keys=False))
    live = target / "live.yaml"
    if case.live:
        live.write_text(yaml.safe_dump_all([d.obj for d in case.live], sort_keys=False))
    elif live.exists():
        live.unlink()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--argo", type=Path, required=True)
    parser.add_argument("--gatewayapi", type=Path, required=True)
    args = parser.parse_args(argv)
    cases, outside = collect({"argo": args.argo, "gatewayapi": args.gatewayapi})
    for case in cases:
        write(case)
    (HERE / "outside.yaml").write_text(
        yaml.safe_dump(
            [{"where": w, "routers": r} for w, r in sorted(outside)],
            sort_keys=False,
            width=120,
        )
    )
    print(f"{len(cases)} cases, {len(outside)} Rollouts routed by other traffic routers")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
