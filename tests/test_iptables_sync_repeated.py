"""Upstream ``TestSyncProxyRulesRepeated``: a stateful sequence of partial syncs, byte for byte.

Transcribed from ``pkg/proxy/iptables/proxier_test.go`` of kubernetes/kubernetes (a revision
from before the nfacct counters, so the INVALID rule has no ``-m nfacct`` and the states are
rendered without counters; the rendering code is otherwise the same). Each step's payload is
normalised with ``sortIPTablesRules`` and compared with upstream's expected text; the payloads
are also applied, in order, to an in-memory iptables with ``--noflush`` semantics, including
the final step where a dangling jump makes the partial restore fail and the retried full sync
repairs it.
"""

from __future__ import annotations

import pytest

from backends.iptables import render_restore, sort_iptables_rules
from backends.iptables.apply import IPTablesState
from backends.iptables.normalize import check_iptables_rule_jumps
from kservice.errors import RuleParseError
from kservice.proxy.config import KubeProxyConfiguration
from kservice.proxy.raw import state_from_objects
from kservice.proxy.types import NodeInfo, NodeProxyState, ProxierOptions

OPTIONS = ProxierOptions(masquerade_mark="0x4000", random_fully=False, nfacct_counters=())


def service(ns: str, name: str, ip: str, port_name: str, port: int) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": ns, "name": name},
            "spec": {"type": "ClusterIP", "clusterIP": ip,
                     "ports": [{"name": port_name, "port": port, "protocol": "TCP"}]}}


def slice_(ns: str, svc: str, ips: list[str], port_name: str, port: int) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"namespace": ns, "name": f"{svc}-1",
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4", "endpoints": [{"addresses": [ip]} for ip in ips],
            "ports": [{"name": port_name, "port": port, "protocol": "TCP"}]}


def state(objects: list[dict]) -> NodeProxyState:
    return state_from_objects(objects, "test-node", "IPv4",
                              KubeProxyConfiguration(cluster_cidr="10.0.0.0/8"),
                              node=NodeInfo(name="test-node", ips=("192.168.0.2",)), options=OPTIONS)


SVC1 = [service("ns1", "svc1", "172.30.0.41", "p80", 80), slice_("ns1", "svc1", ["10.0.1.1"], "p80", 80)]
SVC2 = [service("ns2", "svc2", "172.30.0.42", "p8080", 8080), slice_("ns2", "svc2", ["10.0.2.1"], "p8080", 8080)]
SVC3_SERVICE = service("ns3", "svc3", "172.30.0.43", "p80", 80)
SVC4 = service("ns4", "svc4", "172.30.0.44", "p80", 80)
EPS4 = slice_("ns4", "svc4", ["10.0.4.1"], "p80", 80)

FILTER = """*filter
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-FIREWALL - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
{reject}-A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
"""
NAT_HEAD = ":KUBE-NODEPORTS - [0:0]\n:KUBE-SERVICES - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n:KUBE-POSTROUTING - [0:0]\n"
CAPTURE = {
    1: '-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O\n',
    2: '-A KUBE-SERVICES -m comment --comment "ns2/svc2:p8080 cluster IP" -m tcp -p tcp -d 172.30.0.42 --dport 8080 -j KUBE-SVC-2VJB64SDSIJUP5T6\n',
    3: '-A KUBE-SERVICES -m comment --comment "ns3/svc3:p80 cluster IP" -m tcp -p tcp -d 172.30.0.43 --dport 80 -j KUBE-SVC-X27LE4BHSL4DOUIK\n',
    4: '-A KUBE-SERVICES -m comment --comment "ns4/svc4:p80 cluster IP" -m tcp -p tcp -d 172.30.0.44 --dport 80 -j KUBE-SVC-4SW47YFZTEDKD3PK\n',
}
GLOBAL_NAT = """-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE
"""


def sep(chain: str, spn: str, ip: str, port: int) -> str:
    return (f"-A {chain} -m comment --comment {spn} -s {ip} -j KUBE-MARK-MASQ\n"
            f"-A {chain} -m comment --comment {spn} -m tcp -p tcp -j DNAT --to-destination {ip}:{port}\n")


def svc(chain: str, spn: str, cip: str, port: int, targets: list[tuple[str, str]]) -> str:
    out = f'-A {chain} -m comment --comment "{spn} cluster IP" -m tcp -p tcp -d {cip} --dport {port} ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ\n'
    for i, (ep, target) in enumerate(targets):
        prob = f" -m statistic --mode random --probability {1 / (len(targets) - i):0.10f}" if i < len(targets) - 1 else ""
        out += f'-A {chain} -m comment --comment "{spn} -> {ep}"{prob} -j {target}\n'
    return out


def expected(captures: list[int], chains: list[str], rules: str, deleted: list[str] = (), reject: str = "") -> str:  # type: ignore[assignment]
    decl = "".join(f":{c} - [0:0]\n" for c in chains)
    return (FILTER.format(reject=reject) + "*nat\n" + NAT_HEAD + decl
            + "".join(CAPTURE[i] for i in captures) + GLOBAL_NAT + rules
            + "".join(f"-X {c}\n" for c in deleted) + "COMMIT\n")


SEP1 = sep("KUBE-SEP-SNQ3ZNILQDEJNDQO", "ns1/svc1:p80", "10.0.1.1", 80)
SEP2 = sep("KUBE-SEP-UHEGFW77JX3KXTOV", "ns2/svc2:p8080", "10.0.2.1", 8080)
SVC1_RULES = svc("KUBE-SVC-XPGD46QRK7WJZT7O", "ns1/svc1:p80", "172.30.0.41", 80, [("10.0.1.1:80", "KUBE-SEP-SNQ3ZNILQDEJNDQO")])
SVC2_RULES = svc("KUBE-SVC-2VJB64SDSIJUP5T6", "ns2/svc2:p8080", "172.30.0.42", 8080, [("10.0.2.1:8080", "KUBE-SEP-UHEGFW77JX3KXTOV")])
SVC3_CHAIN = "KUBE-SVC-X27LE4BHSL4DOUIK"
SVC4_CHAINS = ["KUBE-SEP-AYCN5HPXMIRJNJXU", "KUBE-SVC-4SW47YFZTEDKD3PK"]
SVC4_RULES = (sep("KUBE-SEP-AYCN5HPXMIRJNJXU", "ns4/svc4:p80", "10.0.4.1", 80)
              + svc("KUBE-SVC-4SW47YFZTEDKD3PK", "ns4/svc4:p80", "172.30.0.44", 80, [("10.0.4.1:80", "KUBE-SEP-AYCN5HPXMIRJNJXU")]))
SEP3_TWO = (sep("KUBE-SEP-DKCFIS26GWF2WLWC", "ns3/svc3:p80", "10.0.3.2", 80)
            + sep("KUBE-SEP-JVVZVJ7BSEPPRNBS", "ns3/svc3:p80", "10.0.3.3", 80))
SVC3_TWO_RULES = svc(SVC3_CHAIN, "ns3/svc3:p80", "172.30.0.43", 80,
                     [("10.0.3.2:80", "KUBE-SEP-DKCFIS26GWF2WLWC"), ("10.0.3.3:80", "KUBE-SEP-JVVZVJ7BSEPPRNBS")])
SVC3_TWO = SEP3_TWO + SVC3_TWO_RULES

STEPS: list[tuple[str, list[dict], str]] = [
    ("initial full sync", [*SVC1, *SVC2], expected(
        [1, 2], ["KUBE-SEP-SNQ3ZNILQDEJNDQO", "KUBE-SEP-UHEGFW77JX3KXTOV", "KUBE-SVC-2VJB64SDSIJUP5T6", "KUBE-SVC-XPGD46QRK7WJZT7O"],
        SEP1 + SEP2 + SVC2_RULES + SVC1_RULES)),
    ("add svc3", [*SVC1, *SVC2, SVC3_SERVICE, slice_("ns3", "svc3", ["10.0.3.1"], "p80", 80)], expected(
        [1, 2, 3], ["KUBE-SEP-BSWRHOQ77KEXZLNL", SVC3_CHAIN],
        sep("KUBE-SEP-BSWRHOQ77KEXZLNL", "ns3/svc3:p80", "10.0.3.1", 80)
        + svc(SVC3_CHAIN, "ns3/svc3:p80", "172.30.0.43", 80, [("10.0.3.1:80", "KUBE-SEP-BSWRHOQ77KEXZLNL")]))),
    ("delete svc2", [*SVC1, SVC3_SERVICE, slice_("ns3", "svc3", ["10.0.3.1"], "p80", 80)], expected(
        [1, 3], ["KUBE-SEP-UHEGFW77JX3KXTOV", "KUBE-SVC-2VJB64SDSIJUP5T6"], "",
        ["KUBE-SEP-UHEGFW77JX3KXTOV", "KUBE-SVC-2VJB64SDSIJUP5T6"])),
    ("add svc4 without endpoints", [*SVC1, SVC3_SERVICE, slice_("ns3", "svc3", ["10.0.3.1"], "p80", 80), SVC4], expected(
        [1, 3], [], "",
        reject='-A KUBE-SERVICES -m comment --comment "ns4/svc4:p80 has no endpoints" -m tcp -p tcp -d 172.30.0.44 --dport 80 -j REJECT\n')),
    ("add svc4's endpoints", [*SVC1, SVC3_SERVICE, slice_("ns3", "svc3", ["10.0.3.1"], "p80", 80), SVC4, EPS4], expected(
        [1, 3, 4], SVC4_CHAINS, SVC4_RULES)),
    ("change an endpoint of svc3", [*SVC1, SVC3_SERVICE, slice_("ns3", "svc3", ["10.0.3.2"], "p80", 80), SVC4, EPS4], expected(
        [1, 3, 4], ["KUBE-SEP-BSWRHOQ77KEXZLNL", "KUBE-SEP-DKCFIS26GWF2WLWC", SVC3_CHAIN],
        sep("KUBE-SEP-DKCFIS26GWF2WLWC", "ns3/svc3:p80", "10.0.3.2", 80)
        + svc(SVC3_CHAIN, "ns3/svc3:p80", "172.30.0.43", 80, [("10.0.3.2:80", "KUBE-SEP-DKCFIS26GWF2WLWC")]),
        ["KUBE-SEP-BSWRHOQ77KEXZLNL"])),
    ("add an endpoint to svc3", [*SVC1, SVC3_SERVICE, slice_("ns3", "svc3", ["10.0.3.2", "10.0.3.3"], "p80", 80), SVC4, EPS4], expected(
        [1, 3, 4], ["KUBE-SEP-DKCFIS26GWF2WLWC", "KUBE-SEP-JVVZVJ7BSEPPRNBS", SVC3_CHAIN], SVC3_TWO)),
    ("no changes", [*SVC1, SVC3_SERVICE, slice_("ns3", "svc3", ["10.0.3.2", "10.0.3.3"], "p80", 80), SVC4, EPS4], expected(
        [1, 3, 4], [], "")),
]

FINAL_FULL = expected(
    [1, 3], ["KUBE-SEP-AYCN5HPXMIRJNJXU", "KUBE-SEP-DKCFIS26GWF2WLWC", "KUBE-SEP-JVVZVJ7BSEPPRNBS",
             "KUBE-SEP-SNQ3ZNILQDEJNDQO", "KUBE-SVC-4SW47YFZTEDKD3PK", SVC3_CHAIN, "KUBE-SVC-XPGD46QRK7WJZT7O"],
    SEP3_TWO + SEP1 + SVC3_TWO_RULES + SVC1_RULES,
    ["KUBE-SEP-AYCN5HPXMIRJNJXU", "KUBE-SVC-4SW47YFZTEDKD3PK"])


def test_sync_proxy_rules_repeated() -> None:
    kernel = IPTablesState.empty()
    previous: NodeProxyState | None = None
    for i, (what, objects, want) in enumerate(STEPS):
        current = state(objects)
        result = render_restore(current, previous)
        assert result.partial == (previous is not None), what
        assert sort_iptables_rules(result.text) == want, what
        if i == 0:
            assert check_iptables_rule_jumps(want) == []
        kernel.apply_restore(result.text)
        previous = current

    # A rule jumping from svc3's chain to svc4's endpoint makes deleting svc4 fail: the
    # partial restore does not rewrite svc3's chain, so -X of svc4's SEP is refused and
    # nothing is applied (upstream counts a partial-restore failure and schedules a full sync).
    assert previous is not None
    kernel.ensure_rule("nat", SVC3_CHAIN, ("-j", "KUBE-SEP-AYCN5HPXMIRJNJXU"), prepend=False)
    without_svc4 = state([*SVC1, SVC3_SERVICE, slice_("ns3", "svc3", ["10.0.3.2", "10.0.3.3"], "p80", 80)])
    failed = render_restore(without_svc4, previous)
    assert failed.partial
    with pytest.raises(RuleParseError, match="still referenced"):
        kernel.apply_restore(failed.text)
    assert "KUBE-SEP-AYCN5HPXMIRJNJXU" in kernel.chain_names("nat")

    # The retry is a full sync, which rewrites svc3's chain and so can delete svc4's.
    retry = render_restore(without_svc4, previous, full=True)
    assert not retry.partial
    assert sort_iptables_rules(retry.text) == FINAL_FULL
    kernel.apply_restore(retry.text)
    assert "KUBE-SEP-AYCN5HPXMIRJNJXU" not in kernel.chain_names("nat")
