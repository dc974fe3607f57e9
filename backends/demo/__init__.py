"""``kservice demo``: the seed note's walkthrough, end to end, on a throwaway cluster.

See :mod:`backends.demo.walkthrough`. It is an adapter (it drives the mock kernel), so the
``demo`` command is a ``kservice.commands`` plugin: ``demo = backends.demo.cli:register``.
"""

from backends.demo.walkthrough import DEFAULT_EXAMPLES, DemoFacts, demo_cluster, run

__all__ = ["DEFAULT_EXAMPLES", "DemoFacts", "demo_cluster", "run"]
