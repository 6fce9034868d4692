"""Guard: no socket, HTTP call, subprocess wait or thread wait without a timeout.

A static (AST) scan of every Python file of the product, the plugins, the tests, the e2e suite,
the benchmarks and the examples, plus a line scan of the shell scripts. It fails on calls that
can block forever:

* ``urlopen``, ``HTTPConnection``/``HTTPSConnection``, ``socket.create_connection``,
  ``requests``/``httpx`` calls, ``aiohttp.ClientSession`` without a timeout;
* ``subprocess.run/call/check_call/check_output`` without ``timeout=``, ``.communicate()``
  without a timeout, a blocking read of a subprocess pipe (``proc.stdout.read()``,
  ``for line in proc.stdout``), ``os.wait()``/``os.waitpid(pid, 0)``;
* ``.wait()``, ``.join()``, ``.result()`` with no timeout (Popen, Event, Condition, Barrier,
  Thread, Process, Future), ``.get()`` of a queue with no timeout, ``select.select`` without one,
  ``Executor.shutdown(wait=True)``;
* the kubernetes client: ``call_api`` without ``_request_timeout``, a watch (``watch=True`` or
  ``Watch().stream``) without ``timeout_seconds``.

Shell scripts: every ``go build/mod/get/list/install/run``, ``uv sync``, ``pip install`` and
``kind create`` runs under ``limit``/``timeout``; ``flock`` waits with ``-w``; ``curl``/``wget``
carry ``--max-time``/``--timeout``; ``kubectl`` carries ``--request-timeout`` or ``--timeout``.

Exceptions are listed in ``ALLOWED`` with the reason; an entry that no longer matches anything
fails the guard too, so the list cannot rot. The rules themselves are tested on snippets below,
so a rule that stops detecting its call fails here rather than passing silently.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PY_DIRS = ("routers", "plugins", "e2e", "bench", "examples", "tests", "scripts")
SHELL_GLOBS = ("scripts/*", ".ci/*", "e2e/**/*.sh", "argo/**/*.sh")


@dataclass(frozen=True)
class Finding:
    path: str
    where: str  # enclosing function (qualified), or "<module>"
    rule: str
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line} in {self.where}: {self.rule}: {self.text}"


# (path, enclosing function, rule) -> why this wait is bounded anyway.
ALLOWED: dict[tuple[str, str, str], str] = {
    ("e2e/cluster.py", "LineReader._read", "pipe read"): (
        "the reader thread exists so nobody else blocks: a daemon thread that ends at EOF when "
        "the child exits, and every consumer waits on its queue with a timeout (LineReader.get)"
    ),
    ("examples/kopf-operator/canary_operator.py", "run_embedded", "shutdown(wait=True)"): (
        "ThreadPoolExecutor.shutdown has no timeout parameter; the pool only runs kopf handlers "
        "whose every API call is bounded by the Transport's timeouts, so it drains"
    ),
}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else node.attr
    if isinstance(node, ast.Call):
        return _dotted(node.func) + "()"
    return ""


def _kw(call: ast.Call, name: str) -> ast.expr | None:
    for k in call.keywords:
        if k.arg == name:
            return k.value
    return None


def _has_timeout(call: ast.Call, name: str = "timeout", positional: int | None = None) -> bool:
    """A timeout keyword that is not the literal None, or enough positional arguments."""
    if any(k.arg is None for k in call.keywords):  # **kwargs: cannot tell, trust the caller
        return True
    value = _kw(call, name)
    if value is not None:
        return not (isinstance(value, ast.Constant) and value.value is None)
    return positional is not None and len(call.args) >= positional


def _is_const(node: ast.expr | None, value: object) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


SUBPROCESS_WAITERS = {"run", "call", "check_call", "check_output"}
HTTP_LIBS = {"requests", "httpx"}
HTTP_VERBS = {"get", "post", "put", "patch", "delete", "head", "options", "request", "stream"}
PIPES = {"stdout", "stderr"}


def check_call(call: ast.Call, subprocess_names: set[str]) -> str | None:
    """The rule a call breaks, or None."""
    func = call.func
    dotted = _dotted(func)
    attr = func.attr if isinstance(func, ast.Attribute) else dotted
    root = dotted.split(".", 1)[0]
    nargs = len(call.args) + len(call.keywords)

    if attr == "urlopen" and not _has_timeout(call, positional=3):
        return "urlopen without timeout"
    if attr in ("HTTPConnection", "HTTPSConnection") and not _has_timeout(call, positional=3):
        return f"{attr} without timeout"
    if attr == "create_connection" and not _has_timeout(call, positional=2):
        return "create_connection without timeout"
    if (
        dotted in {f"subprocess.{n}" for n in SUBPROCESS_WAITERS} or dotted in subprocess_names
    ) and not _has_timeout(call):
        return f"subprocess.{attr} without timeout"
    if attr == "communicate" and not _has_timeout(call, positional=2):
        return "communicate without timeout"
    if (
        root in HTTP_LIBS
        and attr in HTTP_VERBS
        and dotted.count(".") == 1
        and not _has_timeout(call)
    ):
        return f"{dotted} without timeout"
    if dotted.endswith("aiohttp.ClientSession") and not _has_timeout(call):
        return "aiohttp.ClientSession without timeout"
    if isinstance(func, ast.Attribute):
        if attr in ("wait", "join", "result") and (
            nargs == 0
            or (len(call.args) == 1 and _is_const(call.args[0], None))
            or _is_const(_kw(call, "timeout"), None)
        ):
            return f".{attr}() without timeout"
        if attr == "get" and isinstance(func.value, (ast.Name, ast.Attribute)):
            block = _kw(call, "block")
            blocking_positional = len(call.args) == 1 and _is_const(call.args[0], True)
            if (nargs == 0 or _is_const(block, True) or blocking_positional) and not (
                _has_timeout(call, positional=2)
            ):
                return ".get() of a queue without timeout"
        if (
            attr in ("read", "readline", "readlines")
            and isinstance(func.value, ast.Attribute)
            and func.value.attr in PIPES
        ):
            return "pipe read"
        if attr == "shutdown" and _is_const(_kw(call, "wait"), True):
            return "shutdown(wait=True)"
        if attr == "call_api" and _kw(call, "_request_timeout") is None:
            return "call_api without _request_timeout"
        if (
            attr == "stream"
            and call.args
            and isinstance(call.args[0], ast.Attribute)
            and _kw(call, "timeout_seconds") is None
        ):
            return "watch stream without timeout_seconds"
    if dotted == "select.select" and not _has_timeout(call, positional=4):
        return "select.select without timeout"
    if dotted == "os.wait" or (
        dotted == "os.waitpid" and len(call.args) == 2 and _is_const(call.args[1], 0)
    ):
        return f"{dotted} blocks until a child exits"
    if _is_const(_kw(call, "watch"), True) and _kw(call, "timeout_seconds") is None:
        return "watch=True without timeout_seconds"
    return None


def scan_source(source: str, path: str) -> list[Finding]:
    tree = ast.parse(source, filename=path)
    lines = source.splitlines()
    subprocess_names = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "subprocess"
        for alias in node.names
        if alias.name in SUBPROCESS_WAITERS
    }
    findings: list[Finding] = []

    def visit(node: ast.AST, scope: list[str]) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            scope = [*scope, node.name]
        where = ".".join(scope) or "<module>"
        rule: str | None = None
        if isinstance(node, ast.Call):
            rule = check_call(node, subprocess_names)
        elif isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
            it = node.iter
            if isinstance(it, ast.Attribute) and it.attr in PIPES:
                rule = "pipe read"
        if rule is not None:
            line = getattr(node, "lineno", 0) or getattr(node.iter, "lineno", 0)  # type: ignore[attr-defined]
            text = lines[line - 1].strip() if 0 < line <= len(lines) else ""
            findings.append(Finding(path, where, rule, line, text))
        for child in ast.iter_child_nodes(node):
            visit(child, scope)

    visit(tree, [])
    return findings


def python_files() -> list[Path]:
    out: list[Path] = []
    for d in PY_DIRS:
        out += [
            p
            for p in (ROOT / d).rglob("*.py")
            if ".venv" not in p.parts and "__pycache__" not in p.parts
        ]
    return sorted(out)


# -- shell --------------------------------------------------------------------------------------

LIMITED = re.compile(r"(^|[\s;&|(!])(limit|timeout)\s")
SHELL_RULES: tuple[tuple[str, re.Pattern[str], re.Pattern[str] | None], ...] = (
    # (rule, what needs a bound, what counts as the bound; None = the limit/timeout wrapper)
    # go mod edit/init only rewrite go.mod; everything else may download or build for minutes.
    (
        "go without limit",
        re.compile(r"\bgo\s+(build|get|list|install|run|test|mod\s+(?!edit\b|init\b))"),
        None,
    ),
    ("uv sync without limit", re.compile(r"\buv\s+sync\b"), None),
    ("pip install without limit", re.compile(r"\bpip\s+install\b"), None),
    ("kind create without limit", re.compile(r"\bkind\s+create\b"), None),
    ("flock without -w", re.compile(r"(^|[\s;&|(])flock\s"), re.compile(r"flock\s+(-\w*\s+)*-w")),
    ("curl without --max-time", re.compile(r"\bcurl\s"), re.compile(r"--max-time|\s-m\s")),
    ("wget without --timeout", re.compile(r"\bwget\s"), re.compile(r"--timeout|\s-T\s")),
    (
        "kubectl without --request-timeout",
        re.compile(r"(^\s*|[;&|]\s*|\$\(\s*|\b(then|do|if|!)\s+)kubectl\s"),
        re.compile(r"--request-timeout|--timeout"),
    ),
)


def scan_shell(source: str, path: str) -> list[Finding]:
    findings: list[Finding] = []
    logical: list[tuple[int, str]] = []
    pending, start = "", 0
    for i, raw in enumerate(source.splitlines(), start=1):
        line = raw.split(" #", 1)[0] if not raw.lstrip().startswith("#") else ""
        if not pending:
            start = i
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append((start, pending + line))
        pending = ""
    for lineno, line in logical:
        if re.match(r"\s*(command\s+-v|echo|printf|for tool in)\b", line):
            continue
        for rule, needs, bound in SHELL_RULES:
            if not needs.search(line):
                continue
            ok = bool(bound.search(line)) if bound else bool(LIMITED.search(line))
            if not ok:
                findings.append(Finding(path, "<script>", rule, lineno, line.strip()[:160]))
    return findings


def shell_files() -> list[Path]:
    out: set[Path] = set()
    for pattern in SHELL_GLOBS:
        for p in ROOT.glob(pattern):
            if not p.is_file() or p.suffix == ".py":
                continue
            if p.suffix == ".sh" or p.read_text(errors="replace").startswith("#!"):
                out.add(p)
    return sorted(out)


# -- the guard ---------------------------------------------------------------------------------


def all_findings() -> list[Finding]:
    found: list[Finding] = []
    for p in python_files():
        found += scan_source(p.read_text(), p.relative_to(ROOT).as_posix())
    for p in shell_files():
        found += scan_shell(p.read_text(), p.relative_to(ROOT).as_posix())
    return found


def test_no_call_waits_without_a_timeout() -> None:
    findings = all_findings()
    unexplained = [f for f in findings if (f.path, f.where, f.rule) not in ALLOWED]
    assert not unexplained, (
        "calls that can block forever (give them a timeout, or add them to ALLOWED with the "
        "reason they are bounded anyway):\n" + "\n".join(map(str, unexplained))
    )
    used = {(f.path, f.where, f.rule) for f in findings}
    stale = [key for key in ALLOWED if key not in used]
    assert not stale, f"ALLOWED entries that match nothing any more (remove them): {stale}"


def test_the_guard_scans_what_it_should() -> None:
    scanned = {p.relative_to(ROOT).as_posix() for p in python_files()}
    for must in (
        "routers/cluster/_transport.py",
        "routers/cluster/run.py",
        "plugins/istio/routers_istio/plugin.py",
        "e2e/cluster.py",
        "e2e/test_traffic.py",
        "e2e/_traffic_hosts.py",
        "e2e/_traffic_traefik.py",
        "bench/throughput.py",
        "examples/kopf-operator/canary_operator.py",
        "routers/argo/server.py",
        "e2e/_argo.py",
        "e2e/argo_env.py",
        "e2e/workers.py",
    ):
        assert must in scanned, must
    shells = {p.relative_to(ROOT).as_posix() for p in shell_files()}
    for must in (
        "scripts/test",
        "scripts/_bootstrap.sh",
        ".ci/run",
        "e2e/controlplane/build.sh",
        "e2e/traefik/build.sh",
        "e2e/kind/create.sh",
        "e2e/gobuild.sh",
        "e2e/kwok/build.sh",
        "e2e/argo-controller/build.sh",
        "argo/build.sh",
    ):
        assert must in shells, must


# -- the rules, on snippets (a rule that stops firing fails here) ---------------------------


@pytest.mark.parametrize(
    ("source", "rule"),
    [
        ("urllib.request.urlopen(url)", "urlopen without timeout"),
        ("urlopen(url, None, None)", None),
        ("urlopen(url, timeout=None)", "urlopen without timeout"),
        ("urllib.request.urlopen(url, timeout=2)", None),
        ("http.client.HTTPConnection('h', 80)", "HTTPConnection without timeout"),
        ("http.client.HTTPConnection('h', 80, timeout=5)", None),
        ("HTTPSConnection('h', 443, 5)", None),
        ("socket.create_connection(('h', 1))", "create_connection without timeout"),
        ("socket.create_connection(('h', 1), 3)", None),
        ("subprocess.run(['x'], check=True)", "subprocess.run without timeout"),
        ("subprocess.check_output(['x'])", "subprocess.check_output without timeout"),
        ("subprocess.run(['x'], timeout=9)", None),
        ("from subprocess import run\nrun(['x'])", "subprocess.run without timeout"),
        ("subprocess.run(cmd, **kw)", None),
        ("p.communicate()", "communicate without timeout"),
        ("p.communicate(data, 5)", None),
        ("p.communicate(timeout=5)", None),
        ("proc.wait()", ".wait() without timeout"),
        ("proc.wait(None)", ".wait() without timeout"),
        ("event.wait(timeout=None)", ".wait() without timeout"),
        ("proc.wait(30)", None),
        ("barrier.wait()", ".wait() without timeout"),
        ("thread.join()", ".join() without timeout"),
        ("thread.join(5)", None),
        ("', '.join(parts)", None),
        ("future.result()", ".result() without timeout"),
        ("future.result(timeout=3)", None),
        ("q.get()", ".get() of a queue without timeout"),
        ("q.get(True)", ".get() of a queue without timeout"),
        ("q.get(block=True)", ".get() of a queue without timeout"),
        ("q.get(timeout=1)", None),
        ("q.get(True, 1)", None),
        ("d.get('k')", None),
        ("requests.get(url)", "requests.get without timeout"),
        ("requests.post(url, json=b, timeout=3)", None),
        ("httpx.request('GET', url)", "httpx.request without timeout"),
        ("aiohttp.ClientSession()", "aiohttp.ClientSession without timeout"),
        ("select.select(r, w, x)", "select.select without timeout"),
        ("select.select(r, w, x, 1.0)", None),
        ("os.waitpid(pid, 0)", "os.waitpid blocks until a child exits"),
        ("os.waitpid(pid, os.WNOHANG)", None),
        ("proc.stdout.readline()", "pipe read"),
        ("proc.stderr.read()", "pipe read"),
        ("for line in proc.stdout:\n    pass", "pipe read"),
        ("pool.shutdown(wait=True)", "shutdown(wait=True)"),
        ("pool.shutdown(wait=False)", None),
        ("c.call_api(m, u, h, b)", "call_api without _request_timeout"),
        ("c.call_api(m, u, h, b, _request_timeout=(1, 2))", None),
        ("w.stream(v1.list_pod_for_all_namespaces)", "watch stream without timeout_seconds"),
        ("w.stream(v1.list_pod_for_all_namespaces, timeout_seconds=60)", None),
        ("api.list_namespaced_pod('ns', watch=True)", "watch=True without timeout_seconds"),
    ],
)
def test_python_rule(source: str, rule: str | None) -> None:
    found = scan_source(source, "snippet.py")
    assert [f.rule for f in found] == ([rule] if rule else [])


def test_findings_name_their_function() -> None:
    (f,) = scan_source("class A:\n    def b(self):\n        self.t.join()\n", "x.py")
    assert (f.where, f.line, f.text) == ("A.b", 3, "self.t.join()")


@pytest.mark.parametrize(
    ("source", "rule"),
    [
        ("go build -o x ./cmd", "go without limit"),
        ('limit "$T" "go build" go build -o x ./cmd', None),
        ('limit "$T" "go build" \\\n  go build -o x ./cmd', None),
        ("timeout 60 go mod download", None),
        ("x=$(go list -m -f '{{.Version}}' m)", "go without limit"),
        ("go version", None),
        ("go mod edit -json | python3 -c x", None),
        ("go mod tidy", "go without limit"),
        ("bins=(kube-apiserver kubectl etcd)", None),
        ("x=$(kubectl get pods)", "kubectl without --request-timeout"),
        ("uv sync --frozen", "uv sync without limit"),
        ('limit "$N" "uv sync" uv sync --frozen', None),
        ("python3 -m pip install uv", "pip install without limit"),
        ("flock 9", "flock without -w"),
        ('flock -w "$T" 9', None),
        ("curl -fsSL https://x", "curl without --max-time"),
        ("curl --max-time 30 https://x", None),
        ("kubectl apply -f x", "kubectl without --request-timeout"),
        ("kubectl --request-timeout=60s apply -f x", None),
        ("kind create cluster --name x", "kind create without limit"),
        ("# go build in a comment", None),
        ('echo "run go build yourself"', None),
    ],
)
def test_shell_rule(source: str, rule: str | None) -> None:
    found = scan_shell(source, "snippet.sh")
    assert [f.rule for f in found] == ([rule] if rule else [])
