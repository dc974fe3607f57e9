"""The lab's userspace mode without root: portal rules moved to the real proxy's ports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from backends.lab import rules
from backends.lab.plan import plan_lab
from backends.lab.userspace import listening_from_log, proxy_argv, rules_for
from backends.userspace.render import plan_node
from kservice.embedded import new_cluster
from kservice.errors import BackendError
from kservice.proxy.types import NodeProxyState


@pytest.fixture(scope="module")
def state() -> NodeProxyState:
    cluster = new_cluster()
    return rules.node_state(cluster, plan_lab(cluster, "us"), "kind-worker")


def test_rules_point_at_the_reported_ports(state: NodeProxyState) -> None:
    entries = plan_node(state).entries
    listening = [{"service": e.name, "protocol": e.protocol, "address": "0.0.0.0",
                  "port": 40000 + i} for i, e in enumerate(entries)]
    text = rules_for(state, listening)
    rendered = {e.proxy_port for e in entries}
    targets = {int(p) for p in re.findall(r"--to-ports (\d+)", text)}
    targets |= {int(p) for p in re.findall(r"--to-destination [\d.]+:(\d+)", text)}
    assert targets == {40000 + i for i in range(len(entries))}
    assert not targets & rendered
    # Every rendered portal survives the move, one for one.
    assert text.count("\n-A ") == rules.render(state, "userspace").section(
        "iptables").count("\n-A ")


def test_a_service_the_proxy_does_not_serve_is_an_error(state: NodeProxyState) -> None:
    with pytest.raises(BackendError, match="does not listen"):
        rules_for(state, [])


def test_the_last_port_report_wins(tmp_path: Path) -> None:
    log = tmp_path / "proxy.log"
    assert listening_from_log(log) is None
    first = [{"service": "a/b:c", "protocol": "TCP", "address": "0.0.0.0", "port": 1}]
    second = [{"service": "a/b:c", "protocol": "TCP", "address": "0.0.0.0", "port": 2}]
    log.write_text("starting\n" + json.dumps({"listening": first}) + "\nnoise\n"
                   + json.dumps({"listening": second}) + "\n")
    assert listening_from_log(log) == second


def test_proxy_command_binds_every_address_and_reports_json() -> None:
    argv = proxy_argv("python3", "/s.db", ["a.yaml"], "kind-worker")
    assert argv[argv.index("--state") + 1] == "/s.db"
    assert argv[argv.index("--bind") + 1] == "0.0.0.0"
    assert argv[argv.index("-o") + 1] == "json"
    assert argv[argv.index("--node") + 1] == "kind-worker"
    assert argv[-2:] == ["-f", "a.yaml"]
