"""Shared test settings: headless plotting, quiet TensorFlow, small thread pools."""

from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def interrupt_network_once(monkeypatch, name: str, network: int = 1) -> None:
    """Make ``calamp.network.<name>(cfg, nd, ...)`` raise KeyboardInterrupt the first time it is
    called for ``network`` (a job interrupted between its networks; resume tests)."""
    from calamp import network as network_module

    real = getattr(network_module, name)
    calls = {"n": 0}

    def interrupted(cfg, nd, *args, **kwargs):
        if nd.network == network and calls["n"] == 0:
            calls["n"] += 1
            raise KeyboardInterrupt
        return real(cfg, nd, *args, **kwargs)

    monkeypatch.setattr(network_module, name, interrupted)
