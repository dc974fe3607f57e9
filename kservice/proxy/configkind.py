"""KubeProxyConfiguration as a stored object, so every command sees the same kube-proxy.

In a kubeadm or kind cluster the configuration lives in ConfigMap ``kube-system/kube-proxy``;
kservice stores the document itself as a cluster-scoped object of kind
``KubeProxyConfiguration`` (``kubectl``-style: ``kservice apply -f kube-proxy.yaml``,
``kservice get kubeproxyconfigurations``). A file without ``metadata`` is stored under the
name ``kube-proxy``; that is the one :func:`stored_config` returns (or, if it is absent, the
first by name). Storing it -- rather than keeping it in memory -- is what makes the rendered
rules the same on every invocation of the CLI.
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from kservice.cluster import Cluster
from kservice.errors import InvalidInput
from kservice.models.meta import ObjectMeta
from kservice.proxy.config import KubeProxyConfiguration
from kservice.proxy.configfile import API_VERSION, load_kube_proxy_config

__all__ = [
    "DEFAULT_NAME",
    "KubeProxyConfigObject",
    "KubeProxyConfigStrategy",
    "install",
    "stored_config",
]

DEFAULT_NAME = "kube-proxy"


@attrs.frozen
class KubeProxyConfigObject:
    """A stored KubeProxyConfiguration document: metadata, the parsed config, the source."""

    api_version = API_VERSION
    kind = "KubeProxyConfiguration"

    metadata: ObjectMeta
    config: KubeProxyConfiguration
    #: The document without metadata, as canonical JSON (written back verbatim).
    source: str

    @classmethod
    def from_manifest(cls, data: Any, path: str = "") -> KubeProxyConfigObject:
        if not isinstance(data, dict):
            raise InvalidInput("expected a KubeProxyConfiguration object", path=path or None)
        body = {k: v for k, v in data.items() if k != "metadata"}
        config = load_kube_proxy_config(body, path)
        meta = ObjectMeta.from_manifest(data.get("metadata") or {},
                                        f"{path}.metadata" if path else "metadata")
        if not meta.name:
            meta = attrs.evolve(meta, name=DEFAULT_NAME)
        return cls(metadata=meta, config=config, source=json.dumps(body, sort_keys=True))

    @classmethod
    def from_config(cls, config: KubeProxyConfiguration,
                    name: str = DEFAULT_NAME) -> KubeProxyConfigObject:
        """Store a config built in Python (the embedded cluster's default)."""
        body: dict[str, Any] = {"apiVersion": API_VERSION, "kind": "KubeProxyConfiguration",
                                "mode": config.mode}
        if config.cluster_cidr:
            body["clusterCIDR"] = config.cluster_cidr
        if config.detect_local_mode:
            body["detectLocalMode"] = config.detect_local_mode
        return cls(metadata=ObjectMeta(name=name), config=config,
                   source=json.dumps(body, sort_keys=True))

    def to_manifest(self) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self.source)
        out["metadata"] = self.metadata.to_manifest()
        return out


class KubeProxyConfigStrategy:
    """Cluster-scoped; the document is validated when it is read (strict + kube-proxy's rules)."""

    kind = "KubeProxyConfiguration"
    api_version = API_VERSION
    resource = "kubeproxyconfigurations"
    namespaced = False
    #: The name a document without metadata is stored under (``kservice apply`` reads it).
    default_name = DEFAULT_NAME

    def decode(self, data: Any, path: str = "") -> KubeProxyConfigObject:
        return KubeProxyConfigObject.from_manifest(data, path)

    def create(self, cluster: Cluster, obj: KubeProxyConfigObject) -> KubeProxyConfigObject:
        return obj

    def update(self, cluster: Cluster, old: KubeProxyConfigObject,
               new: KubeProxyConfigObject) -> KubeProxyConfigObject:
        return new

    def delete(self, cluster: Cluster, obj: KubeProxyConfigObject) -> None:
        return None

    def rebuild(self, cluster: Cluster) -> None:
        return None


def install(cluster: Cluster) -> None:
    """Register the KubeProxyConfiguration kind (idempotent)."""
    if "KubeProxyConfiguration" not in cluster.kinds:
        cluster.register(KubeProxyConfigStrategy())


def stored_config(cluster: Cluster) -> KubeProxyConfiguration | None:
    """The cluster's kube-proxy configuration: ``kube-proxy`` if stored, else the first."""
    if "KubeProxyConfiguration" not in cluster.kinds:
        return None
    obj = cluster.find("KubeProxyConfiguration", DEFAULT_NAME, "")
    if obj is None:
        objs = cluster.list("KubeProxyConfiguration")
        obj = objs[0] if objs else None
    return obj.config if obj is not None else None
