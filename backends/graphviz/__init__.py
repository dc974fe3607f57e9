"""Graphviz adapter: DOT text (from :mod:`kservice.graph`) to SVG or PNG by running ``dot``.

The pure core draws graphs as DOT text; turning that into an image needs the Graphviz
``dot`` program, so it happens here, in an adapter, through ``subprocess``. Registered in
the ``kservice.graph_converters`` entry-point group as ``graphviz = backends.graphviz:convert``
so that the CLI's ``render -o svg|png`` finds it without the core importing adapters.

Install Graphviz with ``apt-get install graphviz`` (Debian/Ubuntu), ``dnf install graphviz``
(Fedora) or ``brew install graphviz`` (macOS); ``$KSERVICE_DOT`` names another binary.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import BinaryIO

from kservice.errors import BackendError, InvalidInput

__all__ = ["FORMATS", "INSTALL_HINT", "convert", "dot_binary", "emit"]

#: Output formats this adapter produces (``dot -T<fmt>``).
FORMATS = ("svg", "png")
INSTALL_HINT = ("install Graphviz: apt-get install graphviz (Debian/Ubuntu), "
                "dnf install graphviz (Fedora), brew install graphviz (macOS); "
                "or use -o dot and convert elsewhere")
# A picture of a few dozen nodes takes milliseconds; a minute means dot is stuck.
TIMEOUT_S = 60.0


def dot_binary() -> str:
    """The path of Graphviz ``dot`` (``$KSERVICE_DOT`` or ``dot`` on ``$PATH``)."""
    wanted = os.environ.get("KSERVICE_DOT") or "dot"
    found = shutil.which(wanted)
    if found is None:
        raise BackendError(f"Graphviz `{wanted}` was not found on PATH; {INSTALL_HINT}")
    return found


def convert(dot_text: str, fmt: str) -> bytes:
    """Run ``dot -T<fmt>`` on ``dot_text`` and return the image bytes."""
    if fmt not in FORMATS:
        raise InvalidInput(f"Graphviz adapter: unknown format {fmt!r}; use one of "
                           + ", ".join(FORMATS))
    binary = dot_binary()
    try:
        proc = subprocess.run([binary, f"-T{fmt}"], input=dot_text.encode(),
                              capture_output=True, timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise BackendError(f"Graphviz `dot -T{fmt}` did not finish in {TIMEOUT_S:.0f} s"
                           ) from None
    except OSError as exc:
        raise BackendError(f"cannot run Graphviz `{binary}`: {exc.strerror or exc}") from None
    if proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip().splitlines()
        raise BackendError(f"Graphviz `dot -T{fmt}` failed (exit {proc.returncode}): "
                           + (detail[0] if detail else "no message"))
    return proc.stdout


def emit(dot_text: str, fmt: str, out: BinaryIO | None = None) -> None:
    """Write ``dot_text`` as ``fmt`` (``dot``, ``svg`` or ``png``) to ``out`` (stdout).

    A PNG is not written to a terminal (it would garble it): redirect it to a file.
    """
    stream = out if out is not None else sys.stdout.buffer
    if fmt == "dot":
        data = dot_text.encode()
    else:
        if fmt == "png" and out is None and sys.stdout.isatty():
            raise InvalidInput("refusing to write PNG to a terminal; redirect it to a file "
                               "(... -o png > picture.png)")
        data = convert(dot_text, fmt)
    stream.write(data)
    stream.flush()
