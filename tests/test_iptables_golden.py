"""Conformance: our restore payloads against upstream's whole-dump goldens, byte for byte.

The inputs are the objects upstream's tests feed the proxier directly (no API defaulting or
validation), so the state is built through :func:`kservice.proxy.raw.state_from_objects`.
The proxier settings are upstream's ``NewFakeProxier``: node ``test-node`` / ``192.168.0.2``,
ClusterCIDR ``10.0.0.0/8``, mark ``0x4000``, no ``--random-fully``, both nfacct counters.
Comparison is upstream's: ``sortIPTablesRules(result) == expected`` and
``checkIPTablesRuleJumps(expected)`` clean.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from backends.iptables import (
    IPTablesBackend,
    check_iptables_rule_jumps,
    render_restore,
    sort_iptables_rules,
)
from kservice.proxy.config import KubeProxyConfiguration
from kservice.proxy.raw import state_from_objects
from kservice.proxy.types import NodeInfo, NodeProxyState, ProxierOptions

GOLDEN = Path("/work/shared/reference/golden")
if not GOLDEN.is_dir():  # a checkout may carry its own copy
    GOLDEN = Path(__file__).parent / "golden"

pytestmark = pytest.mark.skipif(not GOLDEN.is_dir(), reason="upstream goldens not available")


def _golden(name: str) -> tuple[list[dict], str]:
    text = (GOLDEN / name).read_text()
    blocks = re.findall(r"```(\w*)\n(.*?)```", text, re.S)
    inputs = next(b for lang, b in blocks if lang == "yaml" and "kind: Service" in b)
    expected = next(b for _lang, b in blocks if b.startswith("*filter"))
    return [o for o in yaml.safe_load_all(inputs) if o], expected


def fake_proxier_state(objects: list[dict]) -> NodeProxyState:
    """The state upstream's ``NewFakeProxier`` + ``makeServiceMap``/``populateEndpointSlices`` give."""
    return state_from_objects(
        objects,
        "test-node",
        "IPv4",
        KubeProxyConfiguration(cluster_cidr="10.0.0.0/8"),
        node=NodeInfo(
            name="test-node",
            ips=("192.168.0.2",),
            interfaces=(
                ("lo", "127.0.0.1/8"),
                ("lo", "::1/128"),
                ("eth0", "192.168.0.2/24"),
                ("eth0", "192.168.1.2/24"),
                ("eth0", "192.168.99.11/24"),
                ("eth0", "2001:db8::1/64"),
                ("eth0", "2001:db8:1::2/64"),
            ),
        ),
        options=ProxierOptions(masquerade_mark="0x4000", random_fully=False),
    )


@pytest.mark.parametrize("name", ["iptables-overall.md", "iptables-badips.md"])
def test_golden_dump(name: str) -> None:
    objects, expected = _golden(name)
    state = fake_proxier_state(objects)
    result = render_restore(state)
    assert not result.partial
    assert sort_iptables_rules(result.text) == expected
    assert check_iptables_rule_jumps(expected) == []
    # Our own payload must be internally consistent too.
    assert check_iptables_rule_jumps(result.text) == []


def test_overall_nat_rule_metric() -> None:
    objects, expected = _golden("iptables-overall.md")
    result = render_restore(fake_proxier_state(objects))
    nat = expected.split("*nat\n", 1)[1]
    assert result.nat_rules == sum(1 for line in nat.splitlines() if line.startswith("-A ")) == 55


def test_backend_restore_section_is_the_golden() -> None:
    objects, expected = _golden("iptables-overall.md")
    rendering = IPTablesBackend().render(fake_proxier_state(objects))
    assert rendering.names == ("restore", "save")
    assert not rendering.partial
    assert sort_iptables_rules(rendering.section("restore")) == expected


def test_golden_is_order_independent() -> None:
    """Upstream's Go map order is random; our output must normalise the same in any order."""
    objects, expected = _golden("iptables-overall.md")
    reversed_state = fake_proxier_state(list(reversed(objects)))
    assert sort_iptables_rules(render_restore(reversed_state).text) == expected
