"""``kservice explain svc[.FIELD...]``: the Service's fields, documented in kubectl's layout.

The descriptions are ours (short, and true to v1.34 behaviour); the layout follows
``kubectl explain`` (KIND / VERSION / FIELD / DESCRIPTION / FIELDS).
"""

from __future__ import annotations

import textwrap

import attrs

from kservice.errors import InvalidInput

__all__ = ["FIELDS", "explain"]


@attrs.frozen
class Field:
    type: str
    description: str
    children: tuple[tuple[str, Field], ...] = ()
    required: bool = False

    def child(self, name: str) -> Field | None:
        return dict(self.children).get(name)


def F(type: str, description: str, *children: tuple[str, Field], required: bool = False
      ) -> Field:
    return Field(type, description, tuple(children), required)


_PORT = F(
    "ServicePort", "One port the Service exposes.",
    ("appProtocol", F("string", "The application protocol (an IANA service name, a "
                                "kubernetes.io/ prefixed name such as kubernetes.io/h2c, or a "
                                "domain-prefixed name). Informational for kube-proxy; used by "
                                "gateways and meshes.")),
    ("name", F("string", "The port's name: a lowercase RFC 1123 label, unique within the "
                         "Service. Required when the Service has more than one port. It names "
                         "the EndpointSlice port and the DNS SRV record "
                         "_<name>._<protocol>.<service>.")),
    ("nodePort", F("integer", "The port opened on every node for NodePort and LoadBalancer "
                              "Services. Allocated from --service-node-port-range "
                              "(30000-32767) when unset; must be in that range and unused "
                              "when given. Forbidden for ClusterIP Services.")),
    ("port", F("integer", "The port the Service listens on at its cluster IP (and "
                          "externalIPs and load-balancer IPs). 1-65535.", required=True)),
    ("protocol", F("string", "TCP (default), UDP or SCTP.")),
    ("targetPort", F("IntOrString", "The port on the endpoints traffic is forwarded to: a "
                                    "number, or the name of a container port, resolved per "
                                    "pod by the EndpointSlice controller. Defaults to port.")),
)

_SPEC = F(
    "ServiceSpec", "The desired behaviour of the Service.",
    ("allocateLoadBalancerNodePorts", F("boolean", "Whether a LoadBalancer Service gets "
                                        "nodePorts. Defaults to true for LoadBalancer.")),
    ("clusterIP", F("string", "The virtual IP of the Service. Allocated from the service "
                              "CIDR when unset; \"None\" makes the Service headless (no "
                              "virtual IP; DNS returns the endpoints). Immutable once set.")),
    ("clusterIPs", F("[]string", "The cluster IPs, one per IP family, primary first; the "
                                 "first equals clusterIP.")),
    ("externalIPs", F("[]string", "Extra IPs kube-proxy accepts traffic for on every node. "
                                  "Not allocated or announced by Kubernetes.")),
    ("externalName", F("string", "For type ExternalName: the DNS name the Service's DNS "
                                 "record is a CNAME to. No proxying happens.")),
    ("externalTrafficPolicy", F("string", "Cluster (default for externally-accessible "
                                          "Services): external traffic may go to any node's "
                                          "endpoints, source NAT'd. Local: only to endpoints "
                                          "on the receiving node, keeping the client IP; "
                                          "nodes without one drop it.")),
    ("healthCheckNodePort", F("integer", "For LoadBalancer with externalTrafficPolicy "
                                         "Local: the node port kube-proxy serves /healthz on, "
                                         "telling load balancers which nodes have local "
                                         "endpoints. Allocated when unset.")),
    ("internalTrafficPolicy", F("string", "Cluster (default) or Local: with Local, traffic "
                                          "from inside the cluster goes only to endpoints on "
                                          "the client's node, and is dropped if there are "
                                          "none.")),
    ("ipFamilies", F("[]string", "IPv4 and/or IPv6, primary first. Set by the apiserver "
                                 "from ipFamilyPolicy and the cluster's configuration.")),
    ("ipFamilyPolicy", F("string", "SingleStack, PreferDualStack or RequireDualStack. "
                                   "When unset the apiserver sets SingleStack -- except for "
                                   "a headless Service without a selector, which gets "
                                   "RequireDualStack.")),
    ("loadBalancerClass", F("string", "Which load-balancer implementation handles this "
                                      "LoadBalancer Service. Immutable once set.")),
    ("loadBalancerIP", F("string", "Deprecated: a requested load-balancer IP, honoured only "
                                   "by some implementations.")),
    ("loadBalancerSourceRanges", F("[]string", "For LoadBalancer: client CIDRs allowed to "
                                               "reach the load-balancer IPs; kube-proxy "
                                               "drops others.")),
    ("ports", F("[]ServicePort", "The ports the Service exposes.", *_PORT.children)),
    ("publishNotReadyAddresses", F("boolean", "Publish endpoints whether or not they are "
                                              "ready (marked ready in EndpointSlices and "
                                              "DNS). Used by StatefulSet peer discovery.")),
    ("selector", F("map[string]string", "Pods with all these labels are the Service's "
                                        "endpoints. Without a selector no EndpointSlices are "
                                        "managed: you create them yourself.")),
    ("sessionAffinity", F("string", "None (default) or ClientIP: connections from one "
                                    "client IP go to the same endpoint.")),
    ("sessionAffinityConfig", F("SessionAffinityConfig", "ClientIP affinity settings.",
                                ("clientIP", F("ClientIPConfig", "ClientIP affinity.",
                                               ("timeoutSeconds", F(
                                                   "integer", "How long affinity lasts: "
                                                   "1-86400 seconds, default 10800.")))))),
    ("trafficDistribution", F("string", "A preference for how traffic is spread over "
                                        "endpoints: PreferClose routes to endpoints in the "
                                        "client's zone when that zone has any (via "
                                        "EndpointSlice hints). Newer releases add "
                                        "PreferSameZone and PreferSameNode.")),
    ("type", F("string", "ClusterIP (default): a virtual IP inside the cluster. NodePort: "
                         "also a port on every node. LoadBalancer: also an external load "
                         "balancer. ExternalName: only a DNS CNAME.")),
)

FIELDS = F(
    "Service", "A named set of endpoints (usually pods selected by labels) behind one "
               "stable virtual IP, port list and DNS name; kube-proxy on every node "
               "load-balances connections to the endpoints.",
    ("apiVersion", F("string", "The schema version: v1.")),
    ("kind", F("string", "The kind of object: Service.")),
    ("metadata", F("ObjectMeta", "Name (a DNS-1035 label), namespace, labels and "
                                 "annotations.")),
    ("spec", _SPEC),
    ("status", F("ServiceStatus", "The observed state, written by controllers.",
                 ("conditions", F("[]Condition", "Current conditions of the Service.")),
                 ("loadBalancer", F("LoadBalancerStatus", "The load balancer's addresses.",
                                    ("ingress", F("[]LoadBalancerIngress",
                                                  "IPs or hostnames of the load balancer; "
                                                  "kube-proxy also accepts traffic for these "
                                                  "IPs (ipMode VIP).")))))),
)


def _wrap(text: str, indent: str) -> str:
    return textwrap.fill(text, width=80, initial_indent=indent, subsequent_indent=indent)


def explain(path: str) -> str:
    """kubectl explain's plain-text output for ``svc``, ``svc.spec.ports`` ..."""
    head, *parts = path.split(".")
    if head.lower() not in ("svc", "service", "services"):
        raise InvalidInput(f'explain knows the Service only; got "{head}" '
                           "(try `kservice explain svc.spec`)")
    node = FIELDS
    for i, part in enumerate(parts):
        child = node.child(part)
        if child is None:
            raise InvalidInput(f'field "{part}" does not exist in {".".join(["Service", *parts[:i]])}'
                               f"; its fields: {', '.join(n for n, _ in node.children) or 'none'}")
        node = child
    lines = ["KIND:       Service", "VERSION:    v1", ""]
    if parts:
        lines += [f"FIELD: {parts[-1]} <{node.type}>", ""]
    lines += ["DESCRIPTION:", _wrap(node.description, "    ")]
    if node.children:
        lines += ["", "FIELDS:"]
        for name, f in node.children:
            req = " -required-" if f.required else ""
            lines.append(f"  {name}\t<{f.type}>{req}")
            lines.append(_wrap(f.description, "    "))
            lines.append("")
        lines.pop()
    return "\n".join(lines) + "\n\n"
