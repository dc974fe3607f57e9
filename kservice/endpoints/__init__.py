"""The EndpointSlice and legacy Endpoints controllers (reference ``k8s-service-api.md`` §4).

:func:`install` registers the EndpointSlice and Endpoints kinds and subscribes the
controller; :func:`recompute_all` re-syncs every Service from scratch (used to check that the
incremental path agrees with a full recompute).

The mirroring controller (:class:`MirroringController`) turns user-written Endpoints of
selectorless Services into EndpointSlices, since kube-proxy reads only slices.

Choices kservice makes where Kubernetes is random or depends on things it does not model:

* slice names are ``<service>-<5 chars>`` derived from the cluster seed (upstream:
  ``generateName`` + random suffix);
* endpoints are ordered by pod name inside new slices (upstream: informer order);
* ``service.kubernetes.io/topology-mode: Auto`` hints weigh every node equally instead of by
  allocatable CPU (see :func:`kservice.endpoints._desired._auto_hints`);
* an EndpointSlice keeps ``endpoints``/``ports`` nil when empty, printed ``null`` like a
  stored object read back through kubectl.
"""

from __future__ import annotations

from typing import Any

from kservice.cluster import Cluster
from kservice.endpoints._controller import ANNOTATION_TRIGGER_TIME, EndpointsController
from kservice.endpoints._desired import (
    address_types_for_service,
    desired_endpoints,
    find_port,
    pod_endpoint_ports,
    should_pod_be_in_endpoints,
    should_set_hostname,
)
from kservice.endpoints._legacy import (
    ANNOTATION_OVER_CAPACITY,
    MAX_CAPACITY,
    desired_legacy_endpoints,
    truncate_endpoints,
)
from kservice.endpoints._mirroring import (
    MIRRORING_MANAGED_BY,
    MirroringController,
    apiserver_endpoints,
    desired_mirrored_slices,
)
from kservice.endpoints._reconciler import (
    LABEL_HEADLESS,
    LABEL_MANAGED_BY,
    LABEL_SERVICE_NAME,
    MANAGED_BY,
    plan_slices,
    slice_labels,
)
from kservice.endpoints._strategies import (
    EndpointSliceStrategy,
    EndpointsStrategy,
    validate_endpoint_slice,
)

__all__ = [
    "ANNOTATION_OVER_CAPACITY",
    "ANNOTATION_TRIGGER_TIME",
    "LABEL_HEADLESS",
    "LABEL_MANAGED_BY",
    "LABEL_SERVICE_NAME",
    "MANAGED_BY",
    "MAX_CAPACITY",
    "MIRRORING_MANAGED_BY",
    "EndpointSliceStrategy",
    "EndpointsController",
    "EndpointsStrategy",
    "MirroringController",
    "address_types_for_service",
    "apiserver_endpoints",
    "controller",
    "desired_endpoints",
    "desired_legacy_endpoints",
    "desired_mirrored_slices",
    "find_port",
    "install",
    "plan_slices",
    "pod_endpoint_ports",
    "recompute_all",
    "should_pod_be_in_endpoints",
    "should_set_hostname",
    "slice_labels",
    "truncate_endpoints",
    "validate_endpoint_slice",
]

EXT_KEY = "endpoints.controller"


def install(cluster: Cluster) -> EndpointsController:
    """Register EndpointSlice/Endpoints and start the controller (idempotent).

    Needs the Service, Pod and Node kinds (``kservice.api`` and ``kservice.workloads``);
    install those first.
    """
    ctrl: EndpointsController | None = cluster.extensions.get(EXT_KEY)
    if ctrl is not None:
        return ctrl
    if "EndpointSlice" not in cluster.kinds:
        cluster.register(EndpointSliceStrategy())  # type: ignore[arg-type]
    if "Endpoints" not in cluster.kinds:
        cluster.register(EndpointsStrategy())  # type: ignore[arg-type]
    ctrl = EndpointsController()
    cluster.extensions[EXT_KEY] = ctrl
    cluster.subscribe(ctrl)
    cluster.on_idle(ctrl.on_idle)
    mirror = MirroringController()
    cluster.extensions["endpoints.mirroring"] = mirror
    cluster.subscribe(mirror)
    if "Service" in cluster.kinds and "Pod" in cluster.kinds:
        ctrl.rebuild_indexes(cluster)
        mirror.rebuild(cluster)
    return ctrl


def controller(cluster: Cluster) -> EndpointsController:
    ctrl: Any = cluster.extensions.get(EXT_KEY)
    if ctrl is None:
        raise LookupError("the endpoints controller is not installed on this cluster")
    return ctrl  # type: ignore[no-any-return]


def recompute_all(cluster: Cluster) -> int:
    """Re-derive the indexes and re-sync every Service; returns the number of writes.

    Zero after incremental processing means the incremental path was right.
    """
    ctrl = controller(cluster)
    ctrl.rebuild_indexes(cluster)
    writes = 0
    for svc in cluster.list("Service"):
        writes += ctrl.sync_service(cluster, svc.metadata.namespace, svc.metadata.name)
    mirror = cluster.extensions.get("endpoints.mirroring")
    if mirror is not None:
        mirror.rebuild(cluster)
        for ep in cluster.list("Endpoints"):
            writes += mirror.sync(cluster, ep.metadata.namespace, ep.metadata.name)
    return writes
