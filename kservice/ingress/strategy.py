"""Store strategies for Ingress and IngressClass (the apiserver's registry/networking).

Create: the ``DefaultIngressClass`` mutating admission plugin runs first (an Ingress with
neither ``ingressClassName`` nor the ``kubernetes.io/ingress.class`` annotation gets the
class annotated ``ingressclass.kubernetes.io/is-default-class: "true"``; with several
defaults the newest wins, as since v1.30), then ``PrepareForCreate`` (status wiped,
``generation: 1``) and validation. Update keeps the status and bumps ``generation`` when the
spec changed, then validates with update ratcheting.

The beta API versions are not served (removed in v1.22): decoding one fails with a hint;
:func:`kservice.ingress.ingress_from_legacy` converts such manifests explicitly.
"""

from __future__ import annotations

from typing import Any

import attrs

from kservice.ingress.models import Ingress, IngressClass
from kservice.ingress.validation import (
    ANNOTATION_INGRESS_CLASS,
    check_ingress,
    check_ingress_class,
)

__all__ = ["IngressClassStrategy", "IngressStrategy", "default_ingress_class", "install"]


def default_ingress_class(cluster: Any) -> IngressClass | None:
    """The default IngressClass; the most recently created when several are marked."""
    if "IngressClass" not in cluster.kinds:
        return None
    defaults: list[IngressClass] = [ic for ic in cluster.list("IngressClass") if ic.is_default]
    if not defaults:
        return None
    defaults.sort(key=lambda ic: (ic.metadata.creation_timestamp or "", ic.metadata.name))
    return defaults[-1]


class IngressStrategy:
    kind = "Ingress"
    api_version = "networking.k8s.io/v1"
    resource = "ingresses"
    namespaced = True

    def decode(self, data: Any, path: str = "") -> Ingress:
        return Ingress.from_manifest(data, path)

    def create(self, cluster: Any, obj: Ingress) -> Ingress:
        if (obj.spec.ingress_class_name is None
                and ANNOTATION_INGRESS_CLASS not in obj.metadata.annotations):
            default = default_ingress_class(cluster)
            if default is not None:
                obj = attrs.evolve(obj, spec=attrs.evolve(obj.spec,
                                                          ingress_class_name=default.name))
        obj = attrs.evolve(obj, load_balancer=(),
                           metadata=attrs.evolve(obj.metadata, generation=1))
        check_ingress(obj)
        return obj

    def update(self, cluster: Any, old: Ingress, new: Ingress) -> Ingress:
        generation = old.metadata.generation or 1
        if new.spec != old.spec:
            generation += 1
        new = attrs.evolve(new, load_balancer=old.load_balancer,
                           metadata=attrs.evolve(new.metadata, generation=generation))
        check_ingress(new, old)
        return new

    def delete(self, cluster: Any, obj: Ingress) -> None:
        return None

    def rebuild(self, cluster: Any) -> None:
        return None


def _default_class(ic: IngressClass) -> IngressClass:
    # SetDefaults_IngressClass: parameters without a scope are cluster-scoped.
    if ic.parameters is not None and ic.parameters.scope is None:
        return attrs.evolve(ic, parameters=attrs.evolve(ic.parameters, scope="Cluster"))
    return ic


class IngressClassStrategy:
    kind = "IngressClass"
    api_version = "networking.k8s.io/v1"
    resource = "ingressclasses"
    namespaced = False

    def decode(self, data: Any, path: str = "") -> IngressClass:
        return IngressClass.from_manifest(data, path)

    def create(self, cluster: Any, obj: IngressClass) -> IngressClass:
        obj = _default_class(obj)
        obj = attrs.evolve(obj, metadata=attrs.evolve(obj.metadata, generation=1))
        check_ingress_class(obj)
        return obj

    def update(self, cluster: Any, old: IngressClass, new: IngressClass) -> IngressClass:
        new = _default_class(new)
        generation = old.metadata.generation or 1
        if (new.controller, new.parameters) != (old.controller, old.parameters):
            generation += 1
        new = attrs.evolve(new, metadata=attrs.evolve(new.metadata, generation=generation))
        check_ingress_class(new, old)
        return new

    def delete(self, cluster: Any, obj: IngressClass) -> None:
        return None

    def rebuild(self, cluster: Any) -> None:
        return None


def install(cluster: Any) -> None:
    """Register the Ingress and IngressClass kinds on a cluster."""
    cluster.register(IngressClassStrategy())
    cluster.register(IngressStrategy())
