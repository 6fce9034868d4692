"""The exception tree of canary-routers.

Every error we raise derives from :class:`RoutersError`, so a controller can catch one type and
still branch on the precise cause::

    RoutersError
    ├── ConfigError            invalid input: routing config, traffic state, manifest files
    ├── UnsupportedError       a plugin cannot express the request (plugin, instruction, reason)
    ├── PlanError              the live objects do not allow a plan
    │   ├── TargetNotFoundError    an object the config names does not exist
    │   ├── LimitExceededError     the result would break a CRD limit (rule count, matches, ...)
    │   ├── OwnershipConflictError another owner holds a route name, a weighted route, an object
    │   └── WeightFitError         the canary share does not fit beside destinations we do not own
    ├── PluginError            discovery, loading or contract failure of one plugin
    ├── ConflictError          an object kept changing under us; retries exhausted
    └── ApplyError             the API server refused a write (carries the API status)
        └── ForbiddenError         ... because RBAC denied a verb on a resource

All of them are raised before any write, except ``ConflictError`` and ``ApplyError``, which the
cluster layer raises after reverting what it had applied (see ``ApplyError.applied`` and
``ApplyError.reverted``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

__all__ = [
    "LEGACY_HOLDER",
    "ApplyError",
    "ConfigError",
    "ConflictError",
    "ForbiddenError",
    "LimitExceededError",
    "OwnershipConflictError",
    "PlanError",
    "PluginError",
    "Problem",
    "RoutersError",
    "TargetNotFoundError",
    "UnsupportedError",
    "WeightFitError",
    "is_transient",
]


class RoutersError(Exception):
    """Root of every error canary-routers raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input, located by a dotted/indexed path such as ``headerRoutes[0].name``."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(RoutersError):
    """Invalid input. ``problems`` lists every defect found, each with its field path."""

    def __init__(self, problems: Sequence[Problem] | str, *, source: str | None = None) -> None:
        if isinstance(problems, str):
            problems = [Problem("", problems)]
        self.problems: tuple[Problem, ...] = tuple(problems)
        self.source = source
        super().__init__(self._render())

    def _render(self) -> str:
        prefix = f"{self.source}: " if self.source else ""
        body = "; ".join(str(p) for p in self.problems)
        return f"{prefix}{body}"

    def within(self, prefix: str, *, source: str | None = None) -> ConfigError:
        """Re-root every problem under ``prefix`` (used when a plugin validates its own section)."""
        joined = [Problem(_join_path(prefix, p.path), p.message) for p in self.problems]
        return ConfigError(joined, source=source or self.source)


def _join_path(prefix: str, path: str) -> str:
    if not prefix:
        return path
    if not path:
        return prefix
    return f"{prefix}{path}" if path.startswith("[") else f"{prefix}.{path}"


class UnsupportedError(RoutersError):
    """A plugin cannot express an instruction. Never turned into a silent no-op."""

    def __init__(
        self, plugin: str, instruction: str, reason: str, *, hint: str | None = None
    ) -> None:
        self.plugin = plugin
        self.instruction = instruction
        self.reason = reason
        self.hint = hint
        message = f"{plugin}: {instruction} is not supported: {reason}"
        if hint:
            message += f" (hint: {hint})"
        super().__init__(message)


class PlanError(RoutersError):
    """The live objects do not allow the requested state to be planned."""

    def __init__(self, message: str, *, plugin: str | None = None, obj: str | None = None) -> None:
        self.plugin = plugin
        self.obj = obj
        self.message = message
        """The message without the plugin/object prefix (to re-raise it with more context)."""
        parts = [p for p in (plugin, obj) if p]
        super().__init__(f"{': '.join(parts)}: {message}" if parts else message)


class TargetNotFoundError(PlanError):
    """An object the configuration names does not exist."""


class LimitExceededError(PlanError):
    """The planned object would exceed a limit of the target's schema."""


class OwnershipConflictError(PlanError):
    """What this plan needs is held by another owner (another app's config sharing the object).

    Several owners may edit one VirtualService, HTTPRoute, Ingress or TrafficSplit, each only
    what it recorded in the object's ledger. Two of them can never hold one route name, one
    annotation key, one created object or the weights of one route: the second is refused with
    this error before anything is written. ``holder`` is the other owner's key, or
    :data:`LEGACY_HOLDER` for entries an older canary-routers recorded without an owner that
    this owner's config does not name. The CLI exits 1, as for every plan error.
    """

    def __init__(
        self,
        claim: str,
        *,
        owner: str,
        holder: str,
        plugin: str | None = None,
        obj: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.claim = claim
        self.owner = owner
        self.holder = holder
        self.hint = hint
        who = holder if holder == LEGACY_HOLDER else f"owner {holder!r}"
        message = f"{claim} is held by {who}, not by {owner!r}; nothing was written"
        if hint:
            message += f" ({hint})"
        super().__init__(message, plugin=plugin, obj=obj)


LEGACY_HOLDER = "an ownerless ledger entry written by an older canary-routers"
"""``OwnershipConflictError.holder`` for entries no owner has adopted yet."""


class WeightFitError(PlanError):
    """A state asks for more traffic than destinations we do not own leave free.

    ``requested`` is the share of all traffic the state sends to canary and additional
    destinations, ``foreign`` the share other destinations keep, ``fits`` the most that can go
    there (``1 - foreign``); all three are exact fractions of the traffic.
    """

    def __init__(
        self,
        requested: Fraction,
        foreign: Fraction,
        *,
        weight: str = "",
        plugin: str | None = None,
        obj: str | None = None,
        where: str = "",
    ) -> None:
        self.requested = requested
        self.foreign = foreign
        self.fits = 1 - foreign
        self.weight = weight
        self.where = where
        asked = weight or "the state"
        message = (
            f"{where + ': ' if where else ''}{asked} asks for {percent(requested)} of all "
            f"traffic, but destinations canary-routers does not own keep {percent(foreign)} of "
            f"it: at most {percent(self.fits)} fits beside them (lower the weight, remove or "
            "reweight those destinations, or set weightScope: ours to split only the traffic "
            "they leave)"
        )
        super().__init__(message, plugin=plugin, obj=obj)

    def located(self, *, plugin: str, obj: str, where: str = "") -> WeightFitError:
        """The same error, naming the object and the weighted list it concerns."""
        return WeightFitError(
            self.requested, self.foreign, weight=self.weight, plugin=plugin, obj=obj, where=where
        )


def percent(share: Fraction) -> str:
    """A share as a percentage, exact when it is a whole one (``20%``, ``9.524%``)."""
    value = share * 100
    if value.denominator == 1:
        return f"{value.numerator}%"
    return f"{float(value):.4g}%"


class PluginError(RoutersError):
    """A plugin could not be discovered, loaded, or does not honour the contract."""

    def __init__(self, name: str, cause: str, *, distribution: str | None = None) -> None:
        self.name = name
        self.cause = cause
        self.distribution = distribution
        where = f" (from {distribution})" if distribution else ""
        super().__init__(f"plugin {name!r}{where}: {cause}")


class ConflictError(RoutersError):
    """An object changed between our read and our write more often than we retry.

    What the last attempt had applied was reverted (``reverted``); anything that could not be
    reverted is listed in ``revert_failed`` -- never left half-applied silently.
    """

    def __init__(
        self,
        obj: str,
        attempts: int,
        last_cause: str,
        *,
        applied: Sequence[str] = (),
        reverted: Sequence[str] = (),
        revert_failed: Sequence[str] = (),
    ) -> None:
        self.obj = obj
        self.attempts = attempts
        self.last_cause = last_cause
        self.applied = tuple(applied)
        self.reverted = tuple(reverted)
        self.revert_failed = tuple(revert_failed)
        text = (
            f"{obj}: still conflicting after {attempts} attempts ({last_cause}); "
            "another writer keeps changing the fields we edit"
        )
        if self.reverted:
            text += f"; reverted: {', '.join(self.reverted)}"
        if self.revert_failed:
            text += f"; COULD NOT REVERT: {', '.join(self.revert_failed)}"
        super().__init__(text)


class ApplyError(RoutersError):
    """The API server refused an operation; carries the API status and what was undone."""

    def __init__(
        self,
        obj: str,
        *,
        code: int | None,
        reason: str | None,
        message: str,
        operation: str = "",
        applied: Sequence[str] = (),
        reverted: Sequence[str] = (),
        revert_failed: Sequence[str] = (),
    ) -> None:
        self.obj = obj
        self.code = code
        self.reason = reason
        self.api_message = message
        self.operation = operation
        self.applied = tuple(applied)
        self.reverted = tuple(reverted)
        self.revert_failed = tuple(revert_failed)
        status = " ".join(str(x) for x in (code, reason) if x)
        text = f"{operation + ' ' if operation else ''}{obj}: {status}: {message}"
        if self.reverted:
            text += f"; reverted: {', '.join(self.reverted)}"
        if self.revert_failed:
            text += f"; COULD NOT REVERT: {', '.join(self.revert_failed)}"
        super().__init__(text)


class ForbiddenError(ApplyError):
    """RBAC denied a verb; ``verb`` and ``resource`` say which permission is missing."""

    def __init__(self, obj: str, *, verb: str, resource: str, message: str, **kw: object) -> None:
        self.verb = verb
        self.resource = resource
        super().__init__(
            obj,
            code=403,
            reason="Forbidden",
            message=f"missing permission {verb} on {resource}: {message}",
            **kw,  # type: ignore[arg-type]
        )


def is_transient(exc: BaseException) -> bool:
    """Worth retrying later as is: the cluster may change (an object appears, a conflict clears,
    the API server comes back). Config, unsupported, limit and plugin errors never heal alone."""
    if isinstance(exc, (TargetNotFoundError, ConflictError)):
        return True
    if isinstance(exc, ForbiddenError):
        return False
    if isinstance(exc, ApplyError):
        return exc.code in (None, 0, 409, 429) or (exc.code is not None and exc.code >= 500)
    return False
