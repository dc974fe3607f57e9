"""Deterministic stand-ins for the names the apiserver and controllers draw at random.

* ``generateName`` suffixes: 5 characters from apimachinery's ``alphanums``
  (``bcdfghjklmnpqrstvwxz2456789``, no vowels so no words), drawn from a hash of the cluster
  seed and the name's base instead of ``math/rand`` -- the same seed gives the same names.
* ``pod-template-hash``: upstream is ``rand.SafeEncodeString(fmt.Sprint(fnv32a(template)))``
  where the FNV input is Go's spew dump of the PodTemplateSpec. kservice hashes canonical
  JSON of the template instead (same shape of result, different digits than a real cluster).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

__all__ = ["ALPHANUMS", "fnv32a", "generate_name", "safe_encode_string", "template_hash"]

ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"
#: apimachinery names.SimpleNameGenerator: base truncated to 58 = 63 - 5.
MAX_GENERATED_BASE = 58


def safe_encode_string(s: str) -> str:
    """apimachinery ``rand.SafeEncodeString``: each byte mapped into ``ALPHANUMS``."""
    return "".join(ALPHANUMS[ord(c) % len(ALPHANUMS)] for c in s)


def fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def template_hash(template_manifest: dict[str, Any], collision_count: int = 0) -> str:
    """The ``pod-template-hash`` label value for a Deployment's pod template."""
    data = json.dumps(template_manifest, sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        data += collision_count.to_bytes(4, "little")
    return safe_encode_string(str(fnv32a(data)))


def _suffix(seed: int, base: str, attempt: int, salt: int) -> str:
    digest = hashlib.sha256(f"{seed}\x00{base}\x00{salt}\x00{attempt}".encode()).digest()
    return "".join(ALPHANUMS[b % len(ALPHANUMS)] for b in digest[:5])


def generate_name(
    seed: int, base: str, taken: Callable[[str], bool], *, salt: int = 0
) -> str:
    """``<base><5 chars>``, the first candidate (in seed order) for which ``taken`` is false."""
    base = base[:MAX_GENERATED_BASE]
    attempt = 0
    while True:
        name = base + _suffix(seed, base, attempt, salt)
        if not taken(name):
            return name
        attempt += 1
