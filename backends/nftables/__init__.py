"""kube-proxy's nftables mode (v1.34): render, partial sync, golden-test normaliser.

``backend`` is the object registered under the ``kservice.backends`` entry point
``nftables``. See README.md in this directory for the packet flow through the table.
"""

from backends.nftables.names import hash_and_truncate
from backends.nftables.proxier import NFTablesBackend
from backends.nftables.render import Desired, ServiceFragment, render_desired
from backends.nftables.sort import sort_nftables_transaction

__all__ = [
    "Desired",
    "NFTablesBackend",
    "ServiceFragment",
    "backend",
    "hash_and_truncate",
    "render_desired",
    "sort_nftables_transaction",
]

backend = NFTablesBackend()
