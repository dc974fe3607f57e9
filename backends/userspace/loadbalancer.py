"""``LoadBalancerRR``: the userspace proxier's own round-robin balancer (pure, no I/O).

A port of ``pkg/proxy/userspace/roundrobin.go`` (v1.22-v1.25, removed with the mode in
v1.26; reference ``kube-proxy-ipvs-nft-userspace.md`` §4.3):

* one :class:`_Balancer` per service port: the endpoint list (``ip:port`` strings), the
  round-robin index and the affinity policy with its per-client records;
* when the *set* of endpoints changes (order-insensitive), the list is shuffled and the index
  reset to 0; affinity records pointing at removed endpoints are dropped;
* :meth:`LoadBalancerRR.next_endpoint` honours a fresh ClientIP record (keyed by client IP,
  source port ignored) unless ``reset`` is set, otherwise returns ``endpoints[index]`` and
  advances the index; with ClientIP affinity it records the choice;
* TTL = ``sessionAffinityConfig.clientIP.timeoutSeconds`` (0 means upstream's 10800), fixed
  when the balancer entry is created (a later change of the timeout is not applied -- an
  upstream quirk kept here); stale records (age >= TTL) are purged on every sync.

The clock and the shuffle's random source are injected: the real proxy passes
``time.monotonic`` and an OS-seeded ``random.Random``, the mock kernel its virtual clock and
a seeded one, so traces are reproducible.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterable
from fractions import Fraction

import attrs

from kservice.errors import BackendError

__all__ = [
    "DEFAULT_AFFINITY_TTL",
    "LoadBalancerRR",
    "NoEndpoints",
    "ServiceNotFound",
]

#: ``v1.DefaultClientIPServiceAffinitySeconds``: used when the timeout is 0/unset.
DEFAULT_AFFINITY_TTL = 10800


class ServiceNotFound(BackendError, LookupError):
    """``NextEndpoint`` for a service port the balancer does not know."""


class NoEndpoints(BackendError, LookupError):
    """``NextEndpoint`` for a service port with no endpoints (upstream ``ErrMissingEndpoints``)."""


@attrs.define
class _Affinity:
    endpoint: str
    last_used: float


@attrs.define
class _Balancer:
    #: sessionAffinity ClientIP?
    client_ip: bool
    #: The TTL fixed when the entry was created (``newServiceInternal``).
    created_ttl: float
    endpoints: list[str] = attrs.field(factory=list)
    index: int = 0
    #: client IP -> record (upstream ``affinityState`` keyed by ``ip``, port ignored).
    affinity: dict[str, _Affinity] = attrs.field(factory=dict)

    @property
    def ttl(self) -> float | None:
        return self.created_ttl if self.client_ip else None


class LoadBalancerRR:
    """Per-service-port round robin with optional ClientIP affinity; thread-safe."""

    def __init__(self, *, clock: Callable[[], float], rng: random.Random | None = None) -> None:
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._lock = threading.Lock()
        self._services: dict[str, _Balancer] = {}

    # ------------------------------------------------------------------ services
    def new_service(self, name: str, affinity_ttl: int | None) -> None:
        """``NewService`` (``newServiceInternal``).

        ``affinity_ttl`` is ``None`` for sessionAffinity None, else the ClientIP timeout
        (0 means :data:`DEFAULT_AFFINITY_TTL`). As upstream: a new entry takes the TTL given
        (10800 for None); an existing entry only takes the new affinity *type* -- its TTL
        stays what it was at creation (so switching None -> ClientIP later, or changing
        ``timeoutSeconds``, keeps the old TTL until the entry is deleted).
        """
        client_ip = affinity_ttl is not None
        ttl = float(affinity_ttl or DEFAULT_AFFINITY_TTL)
        with self._lock:
            cur = self._services.get(name)
            if cur is None:
                self._services[name] = _Balancer(client_ip=client_ip, created_ttl=ttl)
            else:
                cur.client_ip = client_ip

    def delete_service(self, name: str) -> None:
        with self._lock:
            self._services.pop(name, None)

    def services(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(sorted(self._services))

    def on_endpoints_update(self, name: str, endpoints: Iterable[str]) -> bool:
        """Set the endpoints; returns True when the set changed (list shuffled, index 0)."""
        new = list(dict.fromkeys(endpoints))
        with self._lock:
            bal = self._services.get(name)
            if bal is None:
                raise ServiceNotFound(f"load balancer: unknown service port {name}")
            if sorted(new) == sorted(bal.endpoints):
                return False
            # Upstream: shuffle (rand.Shuffle) and restart the rotation; forget clients
            # pinned to endpoints that went away.
            self._rng.shuffle(new)
            bal.endpoints = new
            bal.index = 0
            keep = set(new)
            for ip in [ip for ip, rec in bal.affinity.items() if rec.endpoint not in keep]:
                del bal.affinity[ip]
            return True

    def endpoints(self, name: str) -> tuple[str, ...]:
        """The current rotation order (after the shuffle)."""
        with self._lock:
            bal = self._services.get(name)
            return tuple(bal.endpoints) if bal else ()

    def has_endpoints(self, name: str) -> bool:
        with self._lock:
            bal = self._services.get(name)
            return bool(bal and bal.endpoints)

    # ------------------------------------------------------------------ choosing
    def next_endpoint(self, name: str, client_ip: str, *, reset: bool = False) -> str:
        """``NextEndpoint(svcPort, srcAddr, sessionAffinityReset)``."""
        now = self._clock()
        with self._lock:
            bal = self._services.get(name)
            if bal is None:
                raise ServiceNotFound(f"load balancer: unknown service port {name}")
            if not bal.endpoints:
                raise NoEndpoints(f"missing endpoints for {name}")
            if bal.ttl is not None and not reset:
                rec = bal.affinity.get(client_ip)
                if rec is not None and now - rec.last_used < bal.ttl:
                    rec.last_used = now
                    return rec.endpoint
            ep = bal.endpoints[bal.index % len(bal.endpoints)]
            bal.index = (bal.index + 1) % len(bal.endpoints)
            if bal.ttl is not None:
                bal.affinity[client_ip] = _Affinity(ep, now)
            return ep

    def choices(self, name: str, client_ip: str) -> tuple[tuple[Fraction, str], ...]:
        """What :meth:`next_endpoint` may return for a *new* client, without changing state.

        A fresh affinity record pins the client (probability 1). Otherwise every endpoint
        gets an equal share: the rotation starts at a random point of a shuffled list, so
        over clients the choice is uniform (the mock kernel's ``trace`` view of round robin).
        """
        now = self._clock()
        with self._lock:
            bal = self._services.get(name)
            if bal is None or not bal.endpoints:
                return ()
            if bal.ttl is not None:
                rec = bal.affinity.get(client_ip)
                if rec is not None and now - rec.last_used < bal.ttl:
                    return ((Fraction(1), rec.endpoint),)
            n = len(bal.endpoints)
            return tuple((Fraction(1, n), ep) for ep in sorted(bal.endpoints))

    def sticky_endpoint(self, name: str, client_ip: str) -> str | None:
        """The endpoint a fresh affinity record pins ``client_ip`` to, if any."""
        now = self._clock()
        with self._lock:
            bal = self._services.get(name)
            if bal is None or bal.ttl is None:
                return None
            rec = bal.affinity.get(client_ip)
            if rec is not None and now - rec.last_used < bal.ttl:
                return rec.endpoint
            return None

    def cleanup_stale_sticky_sessions(self, name: str | None = None) -> int:
        """Drop records whose age reached the TTL (every sync upstream); returns the count."""
        now = self._clock()
        dropped = 0
        with self._lock:
            names = [name] if name is not None else list(self._services)
            for n in names:
                bal = self._services.get(n)
                if bal is None or bal.ttl is None:
                    continue
                for ip in [ip for ip, r in bal.affinity.items() if now - r.last_used >= bal.ttl]:
                    del bal.affinity[ip]
                    dropped += 1
        return dropped
