"""Reusable test support for kservice and for projects built on it.

* :mod:`kservice.testing.services` -- hypothesis strategies for Services (valid and invalid).
* :mod:`kservice.testing.workloads` -- pods, nodes with zones, workloads, KubeProxyConfiguration.
* :mod:`kservice.testing.dataplane` -- node proxy states and probe packets aimed at every frontend.
* :mod:`kservice.testing.strategies` -- the curated strategies: Services, workloads, cluster
  configurations, KubeProxyConfiguration, probe packets at every frontend.
* :mod:`kservice.testing.repro` -- minimal reproducers (manifests + the `kservice trace` command).
* :mod:`kservice.testing.contract` -- :class:`BackendContract`, the test class every backend's
  test module subclasses (third-party backends too).

Import the submodule you need; they import hypothesis, which the core does not otherwise need.
"""
