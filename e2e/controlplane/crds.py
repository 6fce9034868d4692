"""Fetch the official CRD sets used by the e2e control plane from Go modules.

Every file comes from a Go module zip obtained with ``go mod download -json <module>@<version>``
(the only upstream source reachable here is the Go module proxy); nothing is hand-written.
Each set is written to ``<cache>/crds/<set>/`` (``<cache>`` =
``${ROUTERS_E2E_CACHE:-$HOME/.cache/canary-routers}``) together with ``SOURCE.json`` that records
module, version, source paths and the transformations applied. A set is rebuilt only when its
definition (module/version/paths/transform) changed; writes are atomic (temp dir + rename).

Usage:  python3 crds.py [SET ...]        (default: all sets)
        python3 crds.py --list
The last stdout line is the crds root directory.

Only stdlib + PyYAML (for filtering multi-document files and the SMI v1beta1 -> v1 conversion).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

GATEWAY = "sigs.k8s.io/gateway-api"
ISTIO_API = "istio.io/api"
SMI_SDK = "github.com/servicemeshinterface/smi-sdk-go"
TRAEFIK = "github.com/traefik/traefik/v3"
ARGO_ROLLOUTS = "github.com/argoproj/argo-rollouts"
# The Argo Rollouts CRDs must match the controller the e2e builds: one version, read from there.
ARGO_CONTROLLER_GOMOD = Path(__file__).resolve().parent.parent / "argo-controller" / "go.mod"


def required_version(gomod: Path, module: str) -> str:
    """The version of ``module`` required by a go.mod (``require`` lines only)."""
    for line in gomod.read_text().splitlines():
        fields = line.split("//")[0].split()
        if fields[:1] == ["require"]:
            fields = fields[1:]
        if len(fields) == 2 and fields[0] == module:
            return fields[1]
    raise RuntimeError(f"{gomod} does not require {module}")


@dataclass(frozen=True)
class Source:
    path: str  # path of a file inside the module, or a directory (all *.yaml in it)
    keep: tuple[str, ...] = ()  # CRD names to keep (empty: every CustomResourceDefinition)


@dataclass(frozen=True)
class CRDSet:
    name: str
    module: str
    version: str
    sources: tuple[Source, ...]
    transform: str = ""  # "" | "v1beta1-to-v1" | "linkerd-smi"
    note: str = ""


SETS: dict[str, CRDSet] = {
    s.name: s
    for s in (
        CRDSet(
            "gateway-standard-v1.6",
            GATEWAY,
            "v1.6.3",
            (Source("config/crd/standard"),),
            note="Gateway API standard channel (incl. GRPCRoute); the safe-upgrades "
            "ValidatingAdmissionPolicy file is skipped (not a CRD).",
        ),
        CRDSet(
            "gateway-experimental-v1.6",
            GATEWAY,
            "v1.6.3",
            (Source("config/crd/experimental"),),
            note="Gateway API experimental channel; cannot share an apiserver with the standard set.",
        ),
        CRDSet(
            "gateway-standard-v1.2",
            GATEWAY,
            "v1.2.1",
            (Source("config/crd/standard"),),
            note="Gateway API v1.2 standard channel (HTTPRoute rules have no 'name' field).",
        ),
        CRDSet(
            "istio",
            ISTIO_API,
            "v1.29.0",
            (Source("kubernetes/customresourcedefinitions.gen.yaml"),),
            note="All Istio CRDs (networking, security, telemetry, extensions) from istio.io/api.",
        ),
        CRDSet(
            "smi-sdk",
            SMI_SDK,
            "v0.5.0",
            (Source("crds/split.yaml"), Source("crds/specs.yaml"), Source("crds/access.yaml")),
            transform="v1beta1-to-v1",
            note="smi-sdk-go v0.5.0 (the only version the Go proxy serves) ships "
            "apiextensions.k8s.io/v1beta1 CRDs, which Kubernetes >= 1.22 no longer serves; they "
            "are converted mechanically to apiextensions.k8s.io/v1 (see convert_v1beta1_crd).",
        ),
        CRDSet(
            "traefik",
            TRAEFIK,
            "v3.7.10",
            (
                Source(
                    "docs/content/reference/dynamic-configuration/kubernetes-crd-definition-v1.yml"
                ),
            ),
            note="Traefik's kubernetesCRD provider CRDs (traefik.io/v1alpha1: IngressRoute, "
            "TraefikService, Middleware, ...), the file Traefik's install docs apply; the same "
            "version e2e/traefik builds, so the CRDs match the data plane.",
        ),
        CRDSet(
            "smi-linkerd",
            SMI_SDK,
            "v0.5.0",
            (Source("crds/split.yaml"),),
            transform="linkerd-smi",
            note="github.com/linkerd/linkerd-smi (and github.com/linkerd/linkerd2) are NOT served "
            "by the Go module proxy (403 'This module version is not available'), so the "
            "linkerd-smi TrafficSplit CRD (charts/linkerd-smi/templates/trafficsplit-crd.yaml, "
            "itself 'copied from smi-sdk-go crds/split.yaml') cannot be fetched. Next best "
            "official source: smi-sdk-go v0.5.0 crds/split.yaml converted to v1 and reduced to "
            "the versions linkerd-smi serves (v1alpha1 storage with int-or-string weight, "
            "v1alpha2 served; 'matches' only exists from v1alpha3 on), see linkerd_profile.",
        ),
        CRDSet(
            "argo-rollouts",
            ARGO_ROLLOUTS,
            required_version(ARGO_CONTROLLER_GOMOD, ARGO_ROLLOUTS),
            (Source("manifests/crds"),),
            note="Rollout, AnalysisRun, AnalysisTemplate, ClusterAnalysisTemplate, Experiment; "
            "same version as the controller built by e2e/argo-controller (kustomization.yaml "
            "skipped: not a CRD).",
        ),
    )
}


def cache_root() -> Path:
    base = os.environ.get("ROUTERS_E2E_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "canary-routers"
    )
    return Path(base) / "crds"


def go_mod_download(module: str, version: str) -> Path:
    env = dict(os.environ, GOTOOLCHAIN="local", GOFLAGS="-mod=mod")
    with tempfile.TemporaryDirectory() as tmp:  # outside any go.mod
        limit = float(os.environ.get("ROUTERS_E2E_BUILD_TIMEOUT") or 3000)
        try:
            proc = subprocess.run(
                ["go", "mod", "download", "-json", f"{module}@{version}"],
                cwd=tmp,
                check=False,
                env=env,
                capture_output=True,
                text=True,
                timeout=limit,
            )
        except subprocess.TimeoutExpired:
            raise RuntimeError(
                f"go mod download {module}@{version} did not finish within {limit:.0f}s "
                "(ROUTERS_E2E_BUILD_TIMEOUT)"
            ) from None
    try:
        info = json.loads(proc.stdout)
    except json.JSONDecodeError:
        msg = f"go mod download {module}@{version} failed: {proc.stderr.strip()}"
        raise RuntimeError(msg) from None
    if info.get("Error") or proc.returncode != 0:
        raise RuntimeError(
            f"go mod download {module}@{version}: {info.get('Error') or proc.stderr}"
        )
    return Path(info["Dir"])


# ---------------------------------------------------------------------------------------------
# apiextensions.k8s.io/v1beta1 -> v1, following the rules the apiserver itself applied when it
# still served v1beta1 (k8s.io/apiextensions-apiserver pkg/apis/apiextensions/v1beta1 conversion):
# top-level validation/subresources/additionalPrinterColumns are copied into every version,
# JSONPath becomes jsonPath, spec.version is dropped. v1 additionally requires
# preserveUnknownFields=false and a structural schema, so nodes that have properties/items but
# no type get the implied type (object/array) and the root gets type: object.
# ---------------------------------------------------------------------------------------------


def _structural(node: Any) -> Any:
    if isinstance(node, dict):
        out = {k: _structural(v) for k, v in node.items()}
        if "type" not in out and not out.get("x-kubernetes-int-or-string"):
            if "properties" in out or "additionalProperties" in out:
                out["type"] = "object"
            elif "items" in out:
                out["type"] = "array"
        return out
    if isinstance(node, list):
        return [_structural(v) for v in node]
    return node


def convert_v1beta1_crd(doc: dict[str, Any]) -> dict[str, Any]:
    if doc.get("apiVersion") == "apiextensions.k8s.io/v1":
        return doc
    assert doc.get("apiVersion") == "apiextensions.k8s.io/v1beta1", doc.get("apiVersion")
    doc = copy.deepcopy(doc)
    spec = doc["spec"]
    validation = spec.pop("validation", None)
    subresources = spec.pop("subresources", None)
    columns = spec.pop("additionalPrinterColumns", None)
    top_version = spec.pop("version", None)
    versions = spec.get("versions") or [{"name": top_version, "served": True, "storage": True}]
    new_versions = []
    for orig in versions:
        v = dict(orig)
        schema = v.get("schema") or validation
        if schema and schema.get("openAPIV3Schema"):
            s = _structural(schema["openAPIV3Schema"])
            s.setdefault("type", "object")
            v["schema"] = {"openAPIV3Schema": s}
        else:
            v["schema"] = {
                "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
            }
        if "subresources" not in v and subresources:
            v["subresources"] = subresources
        cols = v.get("additionalPrinterColumns", columns)
        if cols:
            v["additionalPrinterColumns"] = [
                {("jsonPath" if k == "JSONPath" else k): val for k, val in c.items()} for c in cols
            ]
        new_versions.append(v)
    spec["versions"] = new_versions
    spec["preserveUnknownFields"] = False
    doc["apiVersion"] = "apiextensions.k8s.io/v1"
    return doc


def linkerd_profile(doc: dict[str, Any]) -> dict[str, Any]:
    """Reduce smi-sdk-go's TrafficSplit CRD to what linkerd-smi serves.

    linkerd-smi's CRD: v1alpha1 (served, storage; backends[].weight int-or-string) and v1alpha2
    (served; weight number); neither version has spec.matches (added in SMI v1alpha3).
    """
    doc = convert_v1beta1_crd(doc)
    assert doc["metadata"]["name"] == "trafficsplits.split.smi-spec.io", doc["metadata"]["name"]
    base = next(v for v in doc["spec"]["versions"] if v["name"] == "v1alpha4")
    out = []
    for name, storage in (("v1alpha1", True), ("v1alpha2", False)):
        v = copy.deepcopy(base)
        v.update(name=name, served=True, storage=storage)
        spec_props = v["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        spec_props.pop("matches", None)
        if name == "v1alpha1":
            weight = spec_props["backends"]["items"]["properties"]["weight"]
            weight.pop("type", None)
            weight["x-kubernetes-int-or-string"] = True
        out.append(v)
    doc["spec"]["versions"] = out
    doc["metadata"].setdefault("labels", {})["linkerd.io/extension"] = "smi"
    return doc


TRANSFORMS = {"": lambda d: d, "v1beta1-to-v1": convert_v1beta1_crd, "linkerd-smi": linkerd_profile}


def _definition_hash(s: CRDSet) -> str:
    blob = json.dumps([s.module, s.version, [(x.path, x.keep) for x in s.sources], s.transform])
    if s.transform:  # the converter code is part of the definition of transformed sets
        blob += hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _collect(moddir: Path, src: Source) -> list[Path]:
    p = moddir / src.path
    if p.is_dir():
        return sorted(x for x in p.iterdir() if x.suffix in (".yaml", ".yml"))
    if not p.is_file():
        raise RuntimeError(f"{src.path} not found in {moddir}")
    return [p]


def fetch_set(s: CRDSet, root: Path | None = None) -> Path:
    root = root or cache_root()
    dest = root / s.name
    defhash = _definition_hash(s)
    marker = dest / "SOURCE.json"
    if marker.is_file():
        try:
            if json.loads(marker.read_text()).get("definition") == defhash:
                return dest
        except (OSError, ValueError):
            pass
    moddir = go_mod_download(s.module, s.version)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp.{s.name}.", dir=root))
    try:
        files, skipped, names = [], [], []
        for src in s.sources:
            for f in _collect(moddir, src):
                raw = f.read_bytes()
                docs = [d for d in yaml.safe_load_all(raw) if d]
                crds = [
                    d
                    for d in docs
                    if d.get("kind") == "CustomResourceDefinition"
                    and (not src.keep or d["metadata"]["name"] in src.keep)
                ]
                rel = str(f.relative_to(moddir))
                if not crds:
                    skipped.append(rel)
                    continue
                out = tmp / f.name
                if len(crds) == len(docs) and not s.transform:
                    out.write_bytes(raw)  # byte-identical copy of the official file
                else:
                    crds = [TRANSFORMS[s.transform](d) for d in crds]
                    out.write_text(yaml.safe_dump_all(crds, sort_keys=False))
                names += [d["metadata"]["name"] for d in crds]
                files.append(
                    {"from": rel, "to": out.name, "sha256": hashlib.sha256(raw).hexdigest()}
                )
        if not names:
            raise RuntimeError(f"no CRDs found for set {s.name}")
        (tmp / "SOURCE.json").write_text(
            json.dumps(
                {
                    "set": s.name,
                    "module": s.module,
                    "version": s.version,
                    "dir": str(moddir),
                    "files": files,
                    "skipped_non_crd": skipped,
                    "crds": names,
                    "transform": s.transform,
                    "note": s.note,
                    "definition": defhash,
                },
                indent=2,
            )
            + "\n"
        )
        os.chmod(tmp, 0o755)
        if dest.exists():
            shutil.rmtree(dest)
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def crd_names(set_dir: Path) -> list[str]:
    names: list[str] = json.loads((Path(set_dir) / "SOURCE.json").read_text())["crds"]
    return names


def main(argv: list[str]) -> int:
    if argv[:1] == ["--list"]:
        for s in SETS.values():
            print(f"{s.name}\t{s.module}@{s.version}\t{','.join(x.path for x in s.sources)}")
        return 0
    names = argv or list(SETS)
    unknown = [n for n in names if n not in SETS]
    if unknown:
        print(
            f"unknown CRD set(s): {', '.join(unknown)}; known: {', '.join(SETS)}", file=sys.stderr
        )
        return 2
    for n in names:
        d = fetch_set(SETS[n])
        print(
            f"crds: {n}: {len(crd_names(d))} CRDs from {SETS[n].module}@{SETS[n].version} -> {d}",
            file=sys.stderr,
        )
    print(cache_root())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
