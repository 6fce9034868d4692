"""A shared watch cache: what Routers read, kept current by list+watch instead of GETs.

One :class:`WatchCache` serves any number of Routers (a controller with many rollouts). The first
read of a kind in a namespace (or cluster-wide, ``all_namespaces=True``) starts an informer for it:
a paginated LIST, then a WATCH from the list's resourceVersion with bookmarks, resumed from the
last resourceVersion seen after a dropped connection and re-listed after ``410 Gone``. From then
on reads, and label-selector lists (:meth:`WatchCache.select`), are answered from memory; a
steady state sends no request at all.

Correctness never rests on the cache being fresh: every patch is guarded by the resourceVersion
it was planned from, so a stale object costs one rejected patch, after which the Router reads
the object from the server (and refreshes the cache with it). Write responses update the cache
at once, and nothing ever replaces an object with an older resourceVersion (a watch event that
arrives after our own write's response is skipped, without even decoding it), so a Router's
next step and its verify see its own write without waiting for the watch.

Memory is bounded: objects are kept as compact JSON without ``metadata.managedFields`` (about a
tenth of the size of the parsed dicts), and at most ``max_bytes`` of them; beyond that the least
recently used bodies are dropped (their names and resourceVersions stay, so presence is still
known) and read from the server when next asked for. Every request has a timeout: lists the
transport's, watches a server-side ``timeoutSeconds`` and a client read timeout above it.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import random
import socket
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import urllib3
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException
from kubernetes.watch import Watch

from routers.cluster._kube import Kube, ResourceInfo
from routers.cluster._transport import DEFAULT_TIMEOUTS, ApiStatus, Timeouts, Transport
from routers.planning.objects import JSON, ObjectRef, SelectorRef

__all__ = ["CacheStats", "EventStream", "Source", "WatchCache"]

log = logging.getLogger("routers.cluster.watch")

DEFAULT_MAX_BYTES = 256 * 1024 * 1024
LIST_PAGE = 250
"""Objects per LIST page: bounds the transient memory of a (re)list, like client-go's pager."""
HELD_KEPT = 4096
"""resourceVersions remembered as stored before their events (an event arrives at most a
moment later; the oldest are forgotten first, which costs only a decode)."""
GONE_KEPT = 4096
"""Deletions remembered per informer, so a late response or event cannot resurrect an object."""

Key = tuple[str | None, str]
"""(namespace, name) of an object within one informer."""
Labels = tuple[tuple[str, str], ...]
"""An object's labels as kept per entry: interned pairs (a dict per object cost 0.4 KiB)."""


class EventStream(Protocol):
    """One watch request: iterate its events (dicts with ``type`` and ``object``); ``stop``
    may be called from another thread and ends the iteration."""

    def __iter__(self) -> Iterator[JSON]: ...

    def stop(self) -> None: ...


class Source(Protocol):
    """Where an informer lists and watches (the API server; a fake in unit tests)."""

    def list(
        self, info: ResourceInfo, namespace: str | None, *, limit: int, cont: str | None
    ) -> JSON: ...

    def watch(
        self, info: ResourceInfo, namespace: str | None, *, resource_version: str, timeout: int
    ) -> EventStream: ...


# -- the API server as a source -------------------------------------------------------------


HELD = "HELD"
"""Event type of a line not decoded: the version it carries is one the cache holds already."""
_RV_KEY = '"resourceVersion":"'


class _Watch(Watch):
    """The official client's watch, told which lines need no decoding: the event of a version
    the cache holds already (our own write's response arrives before its event; decoding a
    300-path Ingress again costs about 0.35 ms). ``held`` gets the raw line and answers the
    resourceVersion it recognised, or None to decode as usual."""

    def __init__(self, held: Callable[[str], str | None]) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._held = held

    def unmarshal_event(self, data: Any, return_type: Any) -> Any:
        rv = self._held(data) if isinstance(data, str) else None
        if rv is not None:
            return {"type": HELD, "raw_object": {"metadata": {"resourceVersion": rv}}}
        return super().unmarshal_event(data, return_type)  # type: ignore[no-untyped-call]


def first_resource_version(line: str) -> str | None:
    """The first ``"resourceVersion":"..."`` of a watch event line: its object's own. The API
    server writes ``type`` first, then the object with ``metadata`` before any field that may
    nest a resourceVersion (struct order for built-in kinds, sorted keys for custom ones), and
    every string value inside metadata has its quotes escaped."""
    i = line.find(_RV_KEY)
    if i < 0:
        return None
    start = i + len(_RV_KEY)
    end = line.find('"', start)
    return line[start:end] if end > start else None


class _ApiStream:
    """A watch through the official client's :class:`Watch` (raw dicts, no model decoding)."""

    def __init__(
        self,
        transport: Transport,
        path: str,
        rv: str,
        timeout: int,
        received: Callable[[int], None] = lambda n: None,
        held: Callable[[str], str | None] = lambda line: None,
    ) -> None:
        self._transport = transport
        self._path = path
        self._rv = rv
        self._timeout = timeout
        self._received = received
        self._watch = _Watch(held)
        self._resp: Any = None
        self._stopped = False

    def stopped(self) -> bool:
        return self._stopped

    def _open(self, **kw: Any) -> Any:
        if self.stopped():
            raise ApiStatus(0, "Stopped", f"watch {self._path} stopped")
        query = [
            ("watch", "true"),
            ("resourceVersion", str(kw["resource_version"])),
            ("allowWatchBookmarks", "true"),
        ]
        resp = self._resp = self._transport.open_stream(
            self._path, query=query, seconds=int(kw["timeout_seconds"])
        )
        if self.stopped():  # stop() ran while we connected
            _shutdown(resp)
        chunks = resp.stream

        def counted(*a: Any, **k: Any) -> Iterator[bytes]:
            for chunk in chunks(*a, **k):
                self._received(len(chunk))
                yield chunk

        resp.stream = counted  # what the watch costs in bytes (CacheStats.watch_bytes)
        return resp

    def __iter__(self) -> Iterator[JSON]:
        try:
            for event in self._watch.stream(  # type: ignore[no-untyped-call]
                self._open, resource_version=self._rv, timeout_seconds=self._timeout
            ):
                if event is None:
                    # Not an event: a blank line, or the cut end of a line when the connection
                    # dropped (the client's Watch yields None for both). The resume from the
                    # last resourceVersion seen delivers the cut event again.
                    continue
                yield {"type": event["type"], "object": event["raw_object"]}
        except ApiException as exc:  # an ERROR event (410 Gone: the resourceVersion expired)
            raise ApiStatus(int(exc.status or 0), "Expired", str(exc.reason or "")) from None
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise ApiStatus(0, "Unreachable", f"watch {self._path} broke: {exc}") from None

    def stop(self) -> None:
        # Watch.stop() alone is lost when it runs before the stream opened its request.
        self._stopped = True
        self._watch.stop()  # type: ignore[no-untyped-call]
        if self._resp is not None:
            _shutdown(self._resp)


def _shutdown(resp: Any) -> None:
    """Unblock a thread reading ``resp`` (what ``Watch.stop`` does to its own response)."""
    sock = getattr(getattr(resp, "connection", None), "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class _ApiSource:
    def __init__(
        self,
        transport: Transport,
        received: Callable[[int], None] = lambda n: None,
        held: Callable[[str], str | None] = lambda line: None,
    ) -> None:
        self.transport = transport
        self.received = received
        self.held = held

    def list(
        self, info: ResourceInfo, namespace: str | None, *, limit: int, cont: str | None
    ) -> JSON:
        query = [("limit", str(limit))] + ([("continue", cont)] if cont else [])
        page: JSON = self.transport.request("GET", info.collection(namespace), query=query) or {}
        return page

    def watch(
        self, info: ResourceInfo, namespace: str | None, *, resource_version: str, timeout: int
    ) -> EventStream:
        path = info.collection(namespace)
        return _ApiStream(self.transport, path, resource_version, timeout, self.received, self.held)


# -- storage ---------------------------------------------------------------------------------


def _newer(a: str, b: str) -> bool:
    """Is resourceVersion ``a`` newer than ``b``? They are etcd revisions (integers) on every
    API server we know; opaque ones cannot be ordered, so the later arrival wins."""
    try:
        return int(a) > int(b)
    except ValueError:
        return a != b


def _encode(obj: JSON) -> bytes:
    meta = obj.get("metadata")
    if isinstance(meta, dict) and "managedFields" in meta:
        obj = {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, check_circular=False).encode()


def _rv_of(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def _labels_of(obj: Mapping[str, Any]) -> Mapping[str, str]:
    labels = (obj.get("metadata") or {}).get("labels")
    return labels if isinstance(labels, dict) else {}


def _key_of(obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return meta.get("namespace") or None, str(meta.get("name") or "")


class _Entry:
    __slots__ = ("data", "labels", "rv")

    def __init__(self, rv: str, data: bytes | None) -> None:
        self.rv = rv
        self.data = data
        """Compact JSON; ``None`` when dropped to stay within ``max_bytes``."""
        self.labels: Labels = ()
        """Kept with or without the body: label selectors are answered without parsing."""


@dataclass(frozen=True)
class CacheStats:
    """Counters since the cache was created (a snapshot)."""

    informers: int
    synced: int
    objects: int
    """Objects known (present in the cluster), with or without their body in memory."""
    bodies: int
    bytes: int
    max_bytes: int
    lists: int
    """LIST pages requested (initial lists, relists, retries)."""
    relists: int
    """Relists after the first: 410 Gone, or a watch that could not be resumed."""
    watches: int
    resumes: int
    """Watches re-opened from the last resourceVersion after a broken or ended stream."""
    events: int
    bookmarks: int
    hits: int
    gets: int
    """Reads (GETs, and selector LISTs) the cache could not answer and sent to the server (not
    synced, forbidden, evicted, or a fresh read after a conflict)."""
    evictions: int
    skipped: int
    """Events and write responses ignored because the cache already held a newer version."""
    errors: int
    watch_bytes: int
    """Bytes received on watch streams (events and bookmarks)."""
    last_error: str | None


class _Informer:
    """List+watch of one resource in one namespace (or all): a thread and a store."""

    def __init__(
        self, cache: WatchCache, info: ResourceInfo, kind: str, namespace: str | None
    ) -> None:
        self.cache = cache
        self.info = info
        self.kind = kind
        self.namespace = namespace
        self.objects: dict[Key, _Entry] = {}
        self.gone: OrderedDict[Key, str] = OrderedDict()
        self.rv: str | None = None
        self.synced = threading.Event()
        self.settled = threading.Event()
        """The first list finished, successfully or not (readers stop waiting)."""
        self.failure: str | None = None
        self.stream: EventStream | None = None
        self.watched = False
        """A watch was opened since the last list (the next one is a resume)."""
        self.thread = threading.Thread(
            target=self._run, name=f"watch-{info.resource}-{namespace or 'all'}", daemon=True
        )

    def describe(self) -> str:
        return f"{self.info.resource} in {self.namespace or 'all namespaces'}"

    # -- the loop ------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            self.settled.set()  # a reader still waiting for the first list stops waiting

    def _loop(self) -> None:
        cache = self.cache
        delay = 0.0
        while not cache._stopping.is_set():
            if delay:
                cache._stopping.wait(delay * (0.5 + random.random() / 2))
                if cache._stopping.is_set():
                    break
            try:
                if self.rv is None:
                    failed = self._list()
                    if failed is not None:
                        delay = self._backoff(failed, delay)
                        continue
                    delay = 0.0
                # A watch that ends at once with nothing delivered backs off: never spin.
                delivered = self._watch()
                delay = 0.0 if delivered else min(max(delay * 2, 0.2), cache.max_backoff)
            except ApiStatus as exc:
                if cache._stopping.is_set():
                    break
                if exc.code == 410:
                    # The resourceVersion expired (compacted, or a restarted server's watch
                    # cache starts later): relist at once.
                    self.rv = None
                    with cache._lock:
                        cache._counts["relists"] += 1
                    delay = 0.0
                    continue
                cache._note_error(f"{self.describe()}: {exc}")
                delay = self._backoff(exc, delay)
            except Exception as exc:  # an informer must outlive any one event
                # A thread that died here would leave its kind cached and never updated
                # again. What is held may now be incomplete, so list again after a backoff.
                if cache._stopping.is_set():
                    break
                log.debug("%s: unexpected error", self.describe(), exc_info=True)
                cache._note_error(f"{self.describe()}: {type(exc).__name__}: {exc}")
                self.rv = None
                delay = min(max(delay * 2, 0.2), cache.max_backoff)

    def _backoff(self, exc: ApiStatus, delay: float) -> float:
        if exc.code in (401, 403, 404) and not self.synced.is_set():
            return max(delay, 60.0)  # no RBAC or no CRD yet: a slow retry is enough
        # A 403 after we could list is a restarted server whose RBAC cache is not warm yet.
        # Unreachable, 5xx, 429: back off, then resume from self.rv (or list again).
        return min(max(delay * 2, 0.2), self.cache.max_backoff)

    def _list(self) -> ApiStatus | None:
        """List every page and replace the store; the error when it failed (already noted)."""
        cache = self.cache
        items: list[JSON] = []
        cont: str | None = None
        rv = ""
        while True:
            try:
                page = cache._source.list(self.info, self.namespace, limit=LIST_PAGE, cont=cont)
            except ApiStatus as exc:
                with cache._lock:
                    cache._counts["lists"] += 1
                if exc.code == 410 and cont:
                    # The continue token expired mid-list: start over.
                    items, cont = [], None
                    continue
                if cache._stopping.is_set():
                    return exc
                cache._note_error(f"cannot list {self.describe()}: {exc}")
                if not self.synced.is_set():
                    self.failure = f"cannot list {self.describe()}: {exc}"
                    self.settled.set()
                return exc
            with cache._lock:
                cache._counts["lists"] += 1
            for obj in page.get("items") or []:
                # Items of a typed list carry no apiVersion/kind; the objects we serve do.
                obj.setdefault("apiVersion", self.info.api_version)
                obj.setdefault("kind", self.kind)
                items.append(obj)
            meta = page.get("metadata") or {}
            rv = str(meta.get("resourceVersion") or "")
            cont = meta.get("continue") or None
            if not cont:
                break
        cache._replace(self, items, rv)
        self.rv = rv
        self.watched = False
        self.failure = None
        self.synced.set()
        self.settled.set()
        return None

    def _watch(self) -> bool:
        """One watch request; True when it delivered anything (events or a normal timeout)."""
        cache = self.cache
        assert self.rv is not None
        # Spread over [watch_seconds/2, watch_seconds], as client-go spreads its watches, so
        # many informers do not all re-open at once; never longer than Timeouts allow.
        longest = cache.timeouts.watch_seconds
        timeout = max(1, int(longest * (0.5 + random.random() / 2)))
        stream = cache._source.watch(
            self.info, self.namespace, resource_version=self.rv, timeout=timeout
        )
        with cache._lock:
            cache._counts["watches"] += 1
            cache._counts["resumes"] += self.watched
        self.watched = True
        self.stream = stream
        started = time.monotonic()
        delivered = False
        try:
            if cache._stopping.is_set():  # stop() may have missed this stream
                return True
            for event in stream:
                delivered = True
                cache._on_event(self, event)
                if cache._stopping.is_set():
                    break
        finally:
            self.stream = None
            stream.stop()  # closes the connection also when an event raised (410 Gone)
        return delivered or time.monotonic() - started > 1.0


class WatchCache:
    """Objects the Routers read, kept current by list+watch; share one per process.

    ``client`` is an ``ApiClient`` (or a :class:`Kube` to share discovery and request hooks).
    Informers start on first use and run until :meth:`stop` (or the ``with`` block ends).
    ``timeouts`` (default: the Kube's transport's, else ``DEFAULT_TIMEOUTS``) bound every list
    and watch: a watch asks the server to end it within ``watch_seconds``, and a read silent
    for ``watch_slack`` longer drops the connection. ``all_namespaces=True`` keeps one watch per kind for every namespace (needs cluster-wide
    list/watch RBAC); the default watches per namespace, as a namespaced Role allows.
    """

    def __init__(
        self,
        client: ApiClient | Kube,
        *,
        all_namespaces: bool = False,
        max_bytes: int = DEFAULT_MAX_BYTES,
        sync_timeout: float = 30.0,
        timeouts: Timeouts | None = None,
        max_backoff: float = 10.0,
        source: Source | None = None,
    ) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        if isinstance(client, Kube):
            self.kube = client
            self.timeouts = timeouts or client.transport.timeouts
        else:
            self.timeouts = timeouts or DEFAULT_TIMEOUTS
            self.kube = Kube(Transport(client, timeouts=self.timeouts))
        self.all_namespaces = all_namespaces
        self.max_bytes = max_bytes
        self.sync_timeout = sync_timeout
        self.max_backoff = max_backoff
        self._watch_client: ApiClient | None = None
        self._lock = threading.RLock()
        self._held: OrderedDict[str, None] = OrderedDict()
        """resourceVersions stored from write responses and reads before their events came."""
        if source is None:
            source = _ApiSource(self._watch_transport(), self._received, self._held_line)
        self._source = source
        self._stopping = threading.Event()
        self._informers: dict[tuple[str, str, str, str | None], _Informer] = {}
        self._routes: dict[tuple[str, str, str | None, str | None], _Informer] = {}
        self._lru: OrderedDict[tuple[_Informer, Key], int] = OrderedDict()
        self._bytes = 0
        self._counts = dict.fromkeys(
            (
                "lists",
                "relists",
                "watches",
                "resumes",
                "events",
                "bookmarks",
                "hits",
                "gets",
                "evictions",
                "skipped",
                "errors",
                "watch_bytes",
            ),
            0,
        )
        self._last_error: str | None = None
        self._facts: dict[tuple[str, ...], Any] = {}

    def _watch_transport(self) -> Transport:
        """Watches get their own connection pool: each holds a connection for minutes, which
        must not starve the writes. Requests are reported to the main transport's hooks."""
        main = self.kube.transport
        cfg = copy.deepcopy(main.api_client.configuration)
        cfg.connection_pool_maxsize = 1024  # connections kept, not opened: one per watch
        self._watch_client = ApiClient(cfg)
        return Transport(self._watch_client, timeouts=self.timeouts, on_request=main._record)

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> WatchCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self, timeout: float = 10.0) -> None:
        """End every watch and join its thread (each at most ``timeout`` seconds)."""
        self._stopping.set()
        with self._lock:
            informers = list(self._informers.values())
        for inf in informers:
            stream = inf.stream
            if stream is not None:
                stream.stop()
        deadline = time.monotonic() + timeout
        for inf in informers:
            if inf.thread.is_alive():
                inf.thread.join(max(0.0, deadline - time.monotonic()))
        if self._watch_client is not None:
            self._watch_client.close()  # type: ignore[no-untyped-call]
            self._watch_client = None

    @property
    def stopped(self) -> bool:
        return self._stopping.is_set()

    # -- reading -------------------------------------------------------------------------------

    def get(self, ref: ObjectRef) -> JSON | None:
        """The object (a fresh dict the caller may keep), or ``None`` when it does not exist.

        Starts watching the ref's kind and namespace on first use and waits for the first list
        (``sync_timeout``); reads the cache cannot answer go to the server.
        """
        inf = self._informer(ref)
        if inf is None:
            return self.fresh(ref)
        if not inf.synced.is_set():
            inf.settled.wait(self.sync_timeout)
            if not inf.synced.is_set():
                return self.fresh(ref)
        key = (ref.namespace if inf.info.namespaced else None, ref.name)
        with self._lock:
            entry = inf.objects.get(key)
            if entry is None:
                self._counts["hits"] += 1
                return None
            data = entry.data
            if data is not None:
                self._counts["hits"] += 1
                self._lru.move_to_end((inf, key))
        if data is None:
            return self.fresh(ref)
        obj: JSON = json.loads(data)
        return obj

    def version(self, ref: ObjectRef) -> str | None:
        """The resourceVersion held for ``ref`` (``None``: not held, or its kind not synced):
        lets a caller that kept a parsed copy of that version skip parsing it again."""
        inf = self._find(ref)
        if inf is None or not inf.synced.is_set():
            return None
        key = (ref.namespace if inf.info.namespaced else None, ref.name)
        with self._lock:
            entry = inf.objects.get(key)
            return entry.rv if entry is not None else None

    def fresh(self, ref: ObjectRef) -> JSON | None:
        """Read from the server (a GET) and keep what it answered."""
        with self._lock:
            self._counts["gets"] += 1
        obj = self.kube.get(ref)
        if obj is not None:
            self.record(obj)
        return obj

    def reader(self) -> Callable[[ObjectRef], JSON | None]:
        return self.get

    def select(self, selector: SelectorRef) -> list[JSON]:
        """Every object of the selector's kind in its namespace whose labels match (fresh
        dicts, by name), from the informer that holds all of them: a LIST with a
        ``labelSelector`` answered from memory. Reads the cache cannot answer (not synced,
        forbidden) go to the server, as with ``get``.

        As fresh as the watch: a route labelled a moment ago may be missed by this step and is
        seen by the next, as it would be by a LIST sent a moment earlier.
        """
        ref = ObjectRef(selector.group, selector.kind, selector.namespace, "", selector.version)
        inf = self._informer(ref)
        if inf is not None and not inf.synced.is_set():
            inf.settled.wait(self.sync_timeout)
        if inf is None or not inf.synced.is_set():
            return self.select_fresh(selector)
        ns = selector.namespace if inf.info.namespaced else None
        match = selector.selector.matches
        with self._lock:
            found = [
                (key[1], entry.data)
                for key, entry in inf.objects.items()
                if key[0] == ns and match(dict(entry.labels))
            ]
            self._counts["hits"] += 1
            for name, data in found:
                if data is not None:
                    self._lru.move_to_end((inf, (ns, name)))
        out: list[JSON] = []
        for name, data in sorted(found, key=lambda f: f[0]):
            if data is not None:
                out.append(json.loads(data))
                continue
            # Its body was dropped to stay within max_bytes: read it (it may have changed).
            obj = self.fresh(ObjectRef(ref.group, ref.kind, ref.namespace, name, ref.version))
            if obj is not None and match(_labels_of(obj)):
                out.append(obj)
        return out

    def select_fresh(self, selector: SelectorRef) -> list[JSON]:
        """One LIST from the server (after a conflict); the cache keeps what it answered."""
        with self._lock:
            self._counts["gets"] += 1
        objs = self.kube.list_selected(selector)
        for obj in objs:
            self.record(obj)
        return objs

    def prefetch(self, refs: Iterable[ObjectRef]) -> None:
        """Start the informers these refs need and wait until they have listed (warm-up)."""
        informers = [inf for ref in refs if (inf := self._informer(ref)) is not None]
        deadline = time.monotonic() + self.sync_timeout
        for inf in informers:
            inf.settled.wait(max(0.0, deadline - time.monotonic()))

    # -- write responses ----------------------------------------------------------------------

    def record(self, obj: Mapping[str, Any]) -> bool:
        """Keep a write's response (or a fresh read); False when nothing watches its kind or a
        newer version is already here. Never moves an object back in resourceVersion."""
        ref = ObjectRef.of(obj)
        inf = self._find(ref)
        if inf is None:
            return False
        with self._lock:
            stored = self._store(inf, dict(obj), demand=True)
            rv = _rv_of(obj)
            if stored and rv:
                self._held[rv] = None  # its event need not be decoded
                while len(self._held) > HELD_KEPT:
                    self._held.popitem(last=False)
            return stored

    def record_deleted(self, ref: ObjectRef, resource_version: str | None = None) -> None:
        """Our delete succeeded: forget the object, and refuse older versions of it later."""
        inf = self._find(ref)
        if inf is None:
            return
        key = (ref.namespace if inf.info.namespaced else None, ref.name)
        with self._lock:
            entry = inf.objects.get(key)
            rv = resource_version or (entry.rv if entry is not None else "")
            if entry is not None and rv and _newer(entry.rv, rv):
                return
            self._drop(inf, key, rv)

    # -- facts shared by the Routers of this cache ------------------------------------------

    def shared(self, key: tuple[str, ...], make: Callable[[], Any]) -> Any:
        """Compute once per key and share (CRD facts: every Router of a plugin asks the same)."""
        with self._lock:
            if key in self._facts:
                return self._facts[key]
        value = make()
        with self._lock:
            return self._facts.setdefault(key, value)

    def forget_shared(self, key: tuple[str, ...]) -> None:
        with self._lock:
            self._facts.pop(key, None)

    # -- statistics -----------------------------------------------------------------------------

    def stats(self) -> CacheStats:
        with self._lock:
            informers = list(self._informers.values())
            objects = sum(len(i.objects) for i in informers)
            return CacheStats(
                informers=len(informers),
                synced=sum(i.synced.is_set() for i in informers),
                objects=objects,
                bodies=len(self._lru),
                bytes=self._bytes,
                max_bytes=self.max_bytes,
                last_error=self._last_error,
                **self._counts,
            )

    # -- internals ------------------------------------------------------------------------------

    def _scope(self, ref: ObjectRef, info: ResourceInfo) -> str | None:
        if not info.namespaced or self.all_namespaces:
            return None
        return ref.namespace or "default"

    def _find(self, ref: ObjectRef) -> _Informer | None:
        """The informer holding ``ref`` in its version, without starting one."""
        ns = ref.namespace or "default"
        with self._lock:
            if ref.version is not None:
                for scope in (ns, None):
                    inf = self._informers.get((ref.group, ref.version, ref.kind, scope))
                    if inf is not None:
                        return inf
                return None
            for (group, _, kind, scope), inf in self._informers.items():
                if group == ref.group and kind == ref.kind and scope in (ns, None):
                    return inf
        return None

    def _informer(self, ref: ObjectRef) -> _Informer | None:
        """The informer for ``ref`` (started on first use); None when reads must go to the
        server: the kind is not served, the cache is stopped, or listing it fails (RBAC)."""
        if self._stopping.is_set():
            return None
        route = (ref.group, ref.kind, ref.version, ref.namespace)
        with self._lock:
            inf = self._routes.get(route)
        if inf is None:
            try:
                info = self.kube.resource(ref)
            except ApiStatus as exc:
                if exc.code == 404:
                    return None  # not served: Kube.get answers None without a request
                raise
            key = (info.group, info.version, ref.kind, self._scope(ref, info))
            with self._lock:
                inf = self._informers.get(key)
                if inf is None:
                    inf = _Informer(self, info, ref.kind, key[3])
                    self._informers[key] = inf
                    inf.thread.start()
                self._routes[route] = inf
        if inf.failure is not None and not inf.synced.is_set():
            return None  # cannot list (RBAC): read from the server; the informer keeps trying
        return inf

    def _held_line(self, line: str) -> str | None:
        """The resourceVersion of a watch event line whose version a write response or a read
        stored already (the event then only moves the resume point), else None. A version is
        recognised once: each appears in one event."""
        rv = first_resource_version(line)
        if rv is None:
            return None
        with self._lock:
            return rv if self._held.pop(rv, False) is None else None

    def _received(self, n: int) -> None:
        with self._lock:
            self._counts["watch_bytes"] += n

    def _note_error(self, message: str) -> None:
        log.warning("watch cache: %s", message)
        with self._lock:
            self._counts["errors"] += 1
            self._last_error = message

    def _on_event(self, inf: _Informer, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        obj = event.get("object")
        if not isinstance(obj, dict):
            return
        if kind == "ERROR":  # a Status (the client's Watch raises these; a source may not)
            raise ApiStatus(
                int(obj.get("code") or 0), str(obj.get("reason") or ""), str(obj.get("message"))
            )
        rv = _rv_of(obj)
        with self._lock:
            if kind == HELD:
                self._counts["skipped"] += 1  # the version a write response stored
            elif kind == "BOOKMARK":
                self._counts["bookmarks"] += 1
            elif kind in ("ADDED", "MODIFIED"):
                self._counts["events"] += 1
                self._store(inf, obj, demand=False)
            elif kind == "DELETED":
                self._counts["events"] += 1
                key = _key_of(obj)
                entry = inf.objects.get(key)
                if entry is not None and rv and _newer(entry.rv, rv):
                    self._counts["skipped"] += 1  # re-created since, as a write response said
                else:
                    self._drop(inf, key, rv)
            if rv:
                inf.rv = rv  # resume point: only the stream moves it, never our writes

    def _store(self, inf: _Informer, obj: JSON, *, demand: bool) -> bool:
        """Keep ``obj`` unless a newer version is here (under the lock). ``demand``: a read or
        a write asked for it, so it may evict colder bodies; a watch event only fills room."""
        key = _key_of(obj)
        rv = _rv_of(obj)
        entry = inf.objects.get(key)
        gone = inf.gone.get(key)
        if gone and rv and not _newer(rv, gone):
            self._counts["skipped"] += 1  # deleted since: a late event or response
            return False
        # The same or an older version: nothing to encode, unless it is the version we know,
        # read again because its body had been dropped to stay within max_bytes.
        reread = entry is not None and rv == entry.rv and entry.data is None and demand
        if entry is not None and rv and not _newer(rv, entry.rv) and not reread:
            self._counts["skipped"] += 1
            return False
        inf.gone.pop(key, None)
        data = _encode(obj)
        warm = entry is not None and entry.data is not None
        if entry is None:
            entry = inf.objects[key] = _Entry(rv, None)
        entry.rv = rv
        entry.labels = tuple(
            (sys.intern(k), sys.intern(v))
            for k, v in _labels_of(obj).items()
            if isinstance(k, str) and isinstance(v, str)
        )
        self._set_body(inf, key, entry, data, admit=demand or warm)
        return True

    def _set_body(self, inf: _Informer, key: Key, entry: _Entry, data: bytes, admit: bool) -> None:
        slot = (inf, key)
        old = self._lru.pop(slot, None)
        if old is not None:
            self._bytes -= old
        size = len(data)
        if size > self.max_bytes or not (admit or self._bytes + size <= self.max_bytes):
            entry.data = None
            if old is not None:
                self._counts["evictions"] += 1
            return
        while self._bytes + size > self.max_bytes and self._lru:
            (cold_inf, cold_key), cold_size = self._lru.popitem(last=False)
            cold = cold_inf.objects.get(cold_key)
            if cold is not None:
                cold.data = None
            self._bytes -= cold_size
            self._counts["evictions"] += 1
        entry.data = data
        self._lru[slot] = size
        self._bytes += size

    def _drop(self, inf: _Informer, key: Key, rv: str) -> None:
        inf.objects.pop(key, None)
        size = self._lru.pop((inf, key), None)
        if size is not None:
            self._bytes -= size
        if rv:
            inf.gone[key] = rv
            inf.gone.move_to_end(key)
            while len(inf.gone) > GONE_KEPT:
                inf.gone.popitem(last=False)

    def _replace(self, inf: _Informer, items: list[JSON], rv: str) -> None:
        """A (re)list: the new truth, except where we hold something newer (a write response)."""
        with self._lock:
            listed = {_key_of(o) for o in items}
            for key in [k for k in inf.objects if k not in listed]:
                entry = inf.objects[key]
                if rv and _newer(entry.rv, rv):
                    continue  # created by a write the list did not see yet
                self._drop(inf, key, rv)
            for obj in items:
                self._store(inf, obj, demand=False)
