"""The error tree prints exactly like apimachinery and kubectl."""

from __future__ import annotations

import pytest

from kservice.errors import (
    FieldError,
    InternalError,
    InvalidInput,
    InvalidObject,
    KServiceError,
    NotInRange,
    RangeFull,
    RuleParseError,
)


def test_field_error_bodies_follow_apimachinery() -> None:
    assert str(FieldError.required("spec.ports")) == "spec.ports: Required value"
    assert (
        str(FieldError.invalid("spec.ports[0].port", 0, "must be between 1 and 65535, inclusive"))
        == "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"
    )
    assert str(FieldError.duplicate("spec.ports[1].name", "web")) == (
        'spec.ports[1].name: Duplicate value: "web"'
    )
    assert str(FieldError.invalid("spec.clusterIPs", ["10.96.0.10", "10.96.0.11"], "x")) == (
        'spec.clusterIPs: Invalid value: []string{"10.96.0.10", "10.96.0.11"}: x'
    )
    assert str(FieldError.invalid("spec.clusterIPs[0]", [], "y")) == (
        "spec.clusterIPs[0]: Invalid value: []string(nil): y"
    )
    assert str(FieldError.invalid("spec.ipFamilyPolicy", None, "z")) == (
        "spec.ipFamilyPolicy: Invalid value: null: z"
    )


def test_not_supported_lists_sorted_quoted_values() -> None:
    e = FieldError.not_supported("spec.type", "Foo", ["NodePort", "ClusterIP", "LoadBalancer",
                                                      "ExternalName"])
    assert str(e) == (
        'spec.type: Unsupported value: "Foo": supported values: '
        '"ClusterIP", "ExternalName", "LoadBalancer", "NodePort"'
    )


def test_invalid_object_aggregates_like_the_apiserver_and_kubectl() -> None:
    one = InvalidObject("Service", "foo", [FieldError.required("spec.ports")])
    assert one.status_message() == 'Service "foo" is invalid: spec.ports: Required value'
    assert one.kubectl_message() == 'The Service "foo" is invalid: spec.ports: Required value'
    a = FieldError.required("spec.ports[0].name")
    b = FieldError.required("spec.ports[1].name")
    many = InvalidObject("Service", "foo", [a, b, a])  # exact duplicates removed
    assert many.status_message() == (
        'Service "foo" is invalid: [spec.ports[0].name: Required value, '
        "spec.ports[1].name: Required value]"
    )
    assert many.kubectl_message().splitlines()[1:] == [
        "* spec.ports[0].name: Required value",
        "* spec.ports[1].name: Required value",
    ]


@pytest.mark.parametrize(
    ("exc", "builtin"),
    [
        (InvalidInput("x"), ValueError),
        (InvalidObject("Service", "a", []), ValueError),
        (InternalError("x"), RuntimeError),
        (RangeFull(), ValueError),
        (NotInRange("x"), ValueError),
        (RuleParseError("x"), ValueError),
    ],
)
def test_every_error_is_a_kservice_error_and_its_nearest_builtin(
    exc: Exception, builtin: type[Exception]
) -> None:
    assert isinstance(exc, KServiceError)
    assert isinstance(exc, builtin)


def test_invalid_input_says_where() -> None:
    e = InvalidInput("unknown field", source="svc.yaml", line=3, column=5, path="spec.foo")
    assert str(e) == "svc.yaml:3:5: unknown field (at spec.foo)"
    assert str(InternalError("failed to allocate a serviceIP: range is full")) == (
        "Internal error occurred: failed to allocate a serviceIP: range is full"
    )
    assert str(RuleParseError("bad", line=7, option="--foo")) == "rules:7: bad (option '--foo')"
