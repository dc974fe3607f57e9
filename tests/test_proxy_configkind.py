"""KubeProxyConfiguration is a stored kind: it survives the state file and drives rendering."""

from __future__ import annotations

from pathlib import Path

import pytest

from kservice.cli import main
from kservice.embedded import new_cluster
from kservice.errors import InvalidInput
from kservice.proxy.configkind import KubeProxyConfigObject, stored_config
from kservice.proxy.snapshot import build_node_state


def test_default_cluster_stores_kinds_kube_proxy_config() -> None:
    c = new_cluster()
    cfg = stored_config(c)
    assert cfg is not None and cfg.cluster_cidr == "10.244.0.0/16" and cfg.mode == "iptables"
    assert build_node_state(c, "kind-worker", "IPv4").config == cfg


def test_applied_document_replaces_the_config_and_round_trips() -> None:
    c = new_cluster()
    doc = {"apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
           "mode": "ipvs", "clusterCIDR": "10.244.0.0/16", "iptables": {"masqueradeAll": True}}
    stored, verb = c.apply(c.decode(doc))
    assert verb == "configured" and stored.metadata.name == "kube-proxy"
    cfg = stored_config(c)
    assert cfg is not None and cfg.mode == "ipvs" and cfg.iptables.masquerade_all
    again = KubeProxyConfigObject.from_manifest(stored.to_manifest())
    assert again.config == cfg
    with pytest.raises(Exception, match="MasqueradeBit"):
        c.decode({**doc, "iptables": {"masqueradeBit": 99}})
    with pytest.raises(InvalidInput):
        c.decode({**doc, "bogus": 1})


def test_config_persists_between_cli_invocations(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    state = str(tmp_path / "s.db")
    assert main(["--state", state, "get", "svc"]) == 0
    capsys.readouterr()
    # The second command loads the stored state: the detect-local masquerade rule must
    # still be rendered from the stored clusterCIDR.
    assert main(["--state", state, "render", "--mode", "iptables", "--node", "kind-worker"]) == 0
    out = capsys.readouterr().out
    assert "! -s 10.244.0.0/16 -j KUBE-MARK-MASQ" in out
    f = tmp_path / "kp.yaml"
    f.write_text("apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n"
                 "mode: iptables\nclusterCIDR: 10.244.0.0/16\n"
                 "iptables: {masqueradeAll: true}\n")
    assert main(["--state", state, "apply", "-f", str(f)]) == 0
    capsys.readouterr()
    assert main(["--state", state, "render", "--mode", "iptables", "--node", "kind-worker"]) == 0
    out = capsys.readouterr().out
    assert "! -s 10.244.0.0/16" not in out
    assert '"default/kubernetes:https cluster IP" -m tcp -p tcp -d 10.96.0.1 --dport 443 -j KUBE-MARK-MASQ' in out
