"""Plugin discovery and loading through the ``routers.plugins`` entry-point group.

Two phases, as Flake8's finder does: :meth:`Registry.discover` lists entry points *without
importing them* (name, distribution, version); :meth:`Registry.load` imports one plugin by name,
checks the contract, and caches success or failure. A broken third-party plugin therefore only
fails the commands that need it, with its name and cause. Two distributions claiming one name
are an error naming both; ``ROUTERS_DISABLE_PLUGINS=a,b`` switches plugins off.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Literal

from routers.contract import SUPPORTED_API_VERSIONS, RouterPlugin
from routers.errors import PluginError

__all__ = ["GROUP", "PluginInfo", "Registry", "default_registry"]

GROUP = "routers.plugins"
DISABLE_ENV = "ROUTERS_DISABLE_PLUGINS"

_REQUIRED = ("capabilities", "parse_config", "targets", "plan", "observe", "permissions")

Status = Literal["available", "loaded", "failed", "disabled", "conflict"]


@dataclass(frozen=True)
class PluginInfo:
    name: str
    distribution: str
    version: str
    value: str
    entry_point: EntryPoint | None = None
    status: Status = "available"
    error: str | None = None


def _installed() -> Iterable[EntryPoint]:
    return entry_points(group=GROUP)


class Registry:
    """Thread-safe plugin registry. ``source`` is injectable so tests need no installs."""

    def __init__(
        self,
        source: Callable[[], Iterable[EntryPoint]] = _installed,
        *,
        disabled: Iterable[str] | None = None,
    ) -> None:
        self._source = source
        if disabled is None:
            disabled = [n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()]
        self._disabled = frozenset(disabled)
        self._lock = threading.RLock()
        self._infos: dict[str, list[PluginInfo]] | None = None
        self._loaded: dict[str, RouterPlugin | PluginError] = {}

    # -- phase 1: discovery without import --------------------------------------------------

    def _discover(self) -> dict[str, list[PluginInfo]]:
        with self._lock:
            if self._infos is None:
                found: dict[str, list[PluginInfo]] = {}
                seen: set[tuple[str, str, str]] = set()
                for ep in self._source():
                    dist = ep.dist.name if ep.dist is not None else "<unknown>"
                    version = ep.dist.version if ep.dist is not None else "?"
                    key = (ep.name, dist, ep.value)
                    if key in seen:  # the same distribution seen twice on sys.path
                        continue
                    seen.add(key)
                    found.setdefault(ep.name, []).append(
                        PluginInfo(ep.name, dist, version, ep.value, ep)
                    )
                self._infos = found
            return self._infos

    def discover(self) -> list[PluginInfo]:
        """Every plugin with its status, sorted by name; imports nothing it has not loaded."""
        out: list[PluginInfo] = []
        for name, infos in sorted(self._discover().items()):
            status, error = self._status(name, infos)
            out.extend(
                PluginInfo(i.name, i.distribution, i.version, i.value, i.entry_point, status, error)
                for i in infos
            )
        return out

    def names(self) -> list[str]:
        return sorted(self._discover())

    def _status(self, name: str, infos: list[PluginInfo]) -> tuple[Status, str | None]:
        if name in self._disabled:
            return "disabled", f"disabled by {DISABLE_ENV}"
        if len(infos) > 1:
            return "conflict", _conflict_message(infos)
        loaded = self._loaded.get(name)
        if isinstance(loaded, PluginError):
            return "failed", loaded.cause
        if loaded is not None:
            return "loaded", None
        return "available", None

    # -- phase 2: load one by name ------------------------------------------------------------

    def load(self, name: str) -> RouterPlugin:
        with self._lock:
            cached = self._loaded.get(name)
            if isinstance(cached, PluginError):
                raise cached
            if cached is not None:
                return cached
            try:
                plugin = self._load(name)
            except PluginError as exc:
                self._loaded[name] = exc
                raise
            self._loaded[name] = plugin
            return plugin

    def _load(self, name: str) -> RouterPlugin:
        infos = self._discover().get(name)
        if not infos:
            available = ", ".join(self.names()) or "none"
            raise PluginError(name, f"no such plugin is installed (installed: {available})")
        if name in self._disabled:
            raise PluginError(
                name, f"disabled by {DISABLE_ENV}", distribution=infos[0].distribution
            )
        if len(infos) > 1:
            raise PluginError(name, _conflict_message(infos))
        info = infos[0]
        assert info.entry_point is not None
        try:
            obj: Any = info.entry_point.load()
        except Exception as exc:  # isolate any failure of third-party code
            raise PluginError(
                name,
                f"import of {info.value} failed: {type(exc).__name__}: {exc}",
                distribution=info.distribution,
            ) from exc
        try:
            plugin = obj() if isinstance(obj, type) else obj
        except Exception as exc:
            raise PluginError(
                name,
                f"constructing {info.value} failed: {type(exc).__name__}: {exc}",
                distribution=info.distribution,
            ) from exc
        check_contract(plugin, name, info.distribution)
        return plugin  # type: ignore[no-any-return]


def check_contract(plugin: Any, name: str, distribution: str | None = None) -> None:
    """pluggy-style validation at load time: fail early, naming what is missing."""
    missing = [attr for attr in _REQUIRED if not callable(getattr(plugin, attr, None))]
    for attr in ("name", "api_version", "crds"):
        if not hasattr(plugin, attr):
            missing.append(attr)
    if missing:
        raise PluginError(
            name,
            f"does not implement the plugin contract (missing: {', '.join(missing)})",
            distribution=distribution,
        )
    if plugin.name != name:
        raise PluginError(
            name,
            f"declares name {plugin.name!r} but is registered as {name!r}",
            distribution=distribution,
        )
    if plugin.api_version not in SUPPORTED_API_VERSIONS:
        supported = ", ".join(str(v) for v in sorted(SUPPORTED_API_VERSIONS))
        raise PluginError(
            name,
            f"implements plugin API version {plugin.api_version!r}; this canary-routers "
            f"supports {supported}",
            distribution=distribution,
        )
    if not isinstance(plugin, RouterPlugin):
        raise PluginError(
            name, "does not satisfy the RouterPlugin protocol", distribution=distribution
        )


def _conflict_message(infos: list[PluginInfo]) -> str:
    names = " and ".join(f"{i.distribution} {i.version} ({i.value})" for i in infos)
    return f"name claimed by more than one distribution: {names}; uninstall one of them"


_default: Registry | None = None
_default_lock = threading.Lock()


def default_registry() -> Registry:
    global _default  # noqa: PLW0603 - process-wide cache of installed entry points
    with _default_lock:
        if _default is None:
            _default = Registry()
        return _default
