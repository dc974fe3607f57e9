"""The documentation site builds (``mkdocs build --strict``) from freshly generated pages.

The docs tree is copied to a temporary directory, ``docs/gen.py`` regenerates the pages there
(so the test never rewrites the checkout), MkDocs builds it strictly (a broken link or a
missing page fails), and the generated pages are checked against what they are generated
from: the CLI's own argparse tree, the modules' ``__all__``, the real renderers.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _snapshot(docs: Path) -> dict[str, str]:
    return {str(p.relative_to(docs)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(docs.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str]]:
    pytest.importorskip("mkdocs")
    tmp = tmp_path_factory.mktemp("docs")
    docs = tmp / "docs"
    shutil.copytree(ROOT / "docs", docs, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "mkdocs.yml", tmp / "mkdocs.yml")
    gen = subprocess.run([sys.executable, str(ROOT / "docs" / "gen.py"), "--docs-dir",
                          str(docs)], capture_output=True, text=True, timeout=300, check=False)
    assert gen.returncode == 0, gen.stderr
    first = _snapshot(docs)
    site = tmp / "site"
    build = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-f",
                            str(tmp / "mkdocs.yml"), "-d", str(site)],
                           capture_output=True, text=True, timeout=300, check=False)
    assert build.returncode == 0, build.stdout + build.stderr
    return docs, site, first


def test_site_has_every_page(built: tuple[Path, Path, dict[str, str]]) -> None:
    _, site, _ = built
    for page in ("index.html", "quickstart/index.html", "tutorial/index.html",
                 "concepts/index.html", "reference/cli/index.html", "reference/api/index.html",
                 "writing-a-backend/index.html", "fidelity/index.html",
                 "performance/index.html", "backends/index.html"):
        assert (site / page).is_file(), page


def test_cli_reference_walks_the_real_parser(built: tuple[Path, Path, dict[str, str]]) -> None:
    docs, _, _ = built
    from kservice.cli import build_parser

    text = (docs / "reference" / "cli.md").read_text()
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name in sub.choices:  # type: ignore[union-attr]
        assert f"`kservice {name}`" in text, name
    # A plugin command (kservice.commands entry point) and its options.
    assert "`kservice trace`" in text and "--dst IP:PORT" in text


def test_api_reference_lists_all_public_names(built: tuple[Path, Path, dict[str, str]]) -> None:
    docs, _, _ = built
    import kservice.graph
    import kservice.trace

    text = (docs / "reference" / "api.md").read_text()
    for mod in (kservice.trace, kservice.graph):
        for name in mod.__all__:
            assert f"`{mod.__name__}.{name}`" in text, name
    assert " at 0x" not in text


def test_tutorial_blocks_come_from_the_renderers(built: tuple[Path, Path, dict[str, str]]
                                                 ) -> None:
    docs, site, _ = built
    text = (docs / "tutorial.md").read_text()
    assert "-j DNAT --to-destination 10.244." in text          # iptables
    assert "TCP  10.99.99.99:8080 rr" in text                   # ipvs (ipvsadm -Ln)
    assert "numgen random mod 3 vmap" in text                  # nftables
    assert "$ kservice get svc -A -o wide" in text             # the walkthrough
    html = (site / "tutorial" / "index.html").read_text()
    if shutil.which("dot"):
        assert 'src="../img/trace-nodeport-iptables.svg"' in html
        svg = (docs / "img" / "trace-nodeport-iptables.svg").read_text()
        assert "<svg" in svg and "DNAT" in svg
    else:
        assert "digraph" in text


def test_fidelity_links_every_divergence_page(built: tuple[Path, Path, dict[str, str]]) -> None:
    docs, _, _ = built
    text = (docs / "fidelity.md").read_text()
    pages = sorted(p.name for p in (ROOT / "docs").glob("divergences-*.md"))
    assert pages
    for name in pages:
        assert f"]({name})" in text


def test_generation_is_deterministic(built: tuple[Path, Path, dict[str, str]]) -> None:
    docs, _, first = built
    again = subprocess.run([sys.executable, str(ROOT / "docs" / "gen.py"), "--docs-dir",
                            str(docs)], capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0, again.stderr
    second = _snapshot(docs)
    changed = sorted(k for k in set(first) | set(second) if first.get(k) != second.get(k))
    assert not changed
