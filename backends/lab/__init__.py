"""The real-kernel lab: the emulated cluster built in Linux network namespaces.

:mod:`.plan` (pure: Cluster -> namespaces, links, addresses, routes, commands),
:mod:`.executor` (runs a plan with ``ip``/``iptables-restore``/``nft``, tears it down),
:mod:`.rules` (each node's rendering, and the mock kernel's prediction from the same
rendering), :mod:`.probe` (real packets, and their comparison with the prediction),
:mod:`.agent` (the responder and probe client run inside the namespaces), :mod:`.cli`
(``kservice lab``). See docs/lab.md.
"""

from backends.lab.plan import Command, LabPlan, confined, plan_from_objects, plan_lab

__all__ = ["Command", "LabPlan", "confined", "plan_from_objects", "plan_lab"]
