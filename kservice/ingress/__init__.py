"""Ingress (networking.k8s.io/v1): models, validation, the store strategy and routing.

* :mod:`kservice.ingress.models` -- Ingress / IngressClass values; the removed v1beta1
  shapes converted as upstream converts them (:func:`ingress_from_legacy`);
* :mod:`kservice.ingress.validation` -- upstream's checks and messages;
* :mod:`kservice.ingress.strategy` -- :func:`install` registers both kinds on a Cluster;
* :mod:`kservice.ingress.routing` -- :func:`route`: which backend and endpoints a request
  reaches.
"""

from kservice.ingress.models import (
    HTTPIngressPath,
    Ingress,
    IngressBackend,
    IngressClass,
    IngressRule,
    IngressServiceBackend,
    IngressSpec,
    IngressTLS,
    ingress_from_legacy,
)
from kservice.ingress.routing import NoRoute, Route, host_matches, path_match, route
from kservice.ingress.strategy import (
    IngressClassStrategy,
    IngressStrategy,
    default_ingress_class,
    install,
)
from kservice.ingress.validation import (
    check_ingress,
    check_ingress_class,
    validate_ingress,
    validate_ingress_class,
)

__all__ = [
    "HTTPIngressPath",
    "Ingress",
    "IngressBackend",
    "IngressClass",
    "IngressClassStrategy",
    "IngressRule",
    "IngressServiceBackend",
    "IngressSpec",
    "IngressStrategy",
    "IngressTLS",
    "NoRoute",
    "Route",
    "check_ingress",
    "check_ingress_class",
    "default_ingress_class",
    "host_matches",
    "ingress_from_legacy",
    "install",
    "path_match",
    "route",
    "validate_ingress",
    "validate_ingress_class",
]
