"""CLI plugin: ``kservice ingress route`` and ``kservice proxy-url`` (pure core underneath)."""
