"""Hypothesis strategies for cluster DNS: Services with their EndpointSlices, as manifests.

:func:`dns_objects` draws a small namespace's worth of objects the DNS zone reads --
ClusterIP, headless and ExternalName Services and the EndpointSlices the controller would
write for them -- shrinking toward one Service with one endpoint. Each constraint names
the Kubernetes rule it encodes, so what is drawn is what a real cluster can hold.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

__all__ = ["dns_label", "dns_objects", "endpoint_manifest"]

# Service names are DNS-1035 labels (ValidateServiceName); kept short so shrinking is quick.
dns_label = st.from_regex(r"\A[a-z]([a-z0-9-]{0,6}[a-z0-9])?\Z")
# IANA_SVC_NAME for port names: lower-case, at least one letter, no "--", no edge hyphen.
_port_name = st.from_regex(r"\A[a-z]{1,4}(-[a-z0-9]{1,3})?\Z")


@st.composite
def endpoint_manifest(draw: st.DrawFn, *, ip: str, hostnames: bool = True) -> dict[str, Any]:
    """One EndpointSlice endpoint at ``ip``: ready or not, with or without a hostname."""
    out: dict[str, Any] = {"addresses": [ip]}
    # conditions.ready: true, false or nil (nil is "ready" to consumers).
    ready = draw(st.sampled_from([True, False, None]))
    out["conditions"] = {} if ready is None else {"ready": ready}
    if hostnames and draw(st.booleans()):
        # hostname must be a DNS-1123 label (EndpointSlice validation).
        out["hostname"] = draw(dns_label)
    return out


@st.composite
def dns_objects(draw: st.DrawFn, *, namespace: str = "default",
                max_services: int = 4) -> list[dict[str, Any]]:
    """Services (+ their slices) of one namespace, with distinct names and cluster IPs."""
    names = draw(st.lists(dns_label, min_size=1, max_size=max_services, unique=True))
    out: list[dict[str, Any]] = []
    ip_pool = iter(range(2, 250))
    ep_pool = iter(range(2, 250))
    for name in names:
        kind = draw(st.sampled_from(["ClusterIP", "Headless", "ExternalName"]))
        meta = {"name": name, "namespace": namespace}
        if kind == "ExternalName":
            out.append({"apiVersion": "v1", "kind": "Service", "metadata": meta,
                        "spec": {"type": "ExternalName",
                                 "externalName": f"{name}.example.com"}})
            continue
        # Port names are unique within a Service; a single port may be unnamed.
        pnames = draw(st.lists(_port_name, min_size=1, max_size=2, unique=True))
        ports: list[dict[str, Any]] = [{"name": n, "port": 80 + i, "protocol": "TCP"} for i, n in enumerate(pnames)]
        if len(ports) == 1 and draw(st.booleans()):
            ports[0].pop("name")
        ip = "None" if kind == "Headless" else f"10.96.1.{next(ip_pool)}"
        out.append({"apiVersion": "v1", "kind": "Service", "metadata": meta,
                    "spec": {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip],
                             "ports": ports}})
        n_eps = draw(st.integers(min_value=0, max_value=3))
        eps = [draw(endpoint_manifest(ip=f"10.244.1.{next(ep_pool)}")) for _ in range(n_eps)]
        # Endpoint hostnames are unique within a Service (a pod's hostname+subdomain).
        seen: set[str] = set()
        for e in eps:
            if e.get("hostname") in seen:
                e.pop("hostname")
            elif "hostname" in e:
                seen.add(e["hostname"])
        out.append({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"name": f"{name}-abcde", "namespace": namespace,
                                 "labels": {"kubernetes.io/service-name": name}},
                    "addressType": "IPv4", "endpoints": eps,
                    "ports": [{**({"name": p["name"]} if "name" in p else {"name": ""}),
                               "port": 8000 + p["port"], "protocol": "TCP"} for p in ports]})
    return out
