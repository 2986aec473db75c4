"""The main job's stages under one name (kept for notebooks and scripts written against it).

The code lives in the modules of the one-way layout: :mod:`calamp.sources` (training sets,
truth, observables, binnings, feature maps), :mod:`calamp.posterior` (build, train, draw),
:mod:`calamp.generation` (generate), :mod:`calamp.network` (one network's unit of work),
:mod:`calamp.job` (``run_job``, ``reanalyse``) and :mod:`calamp.seeds`. A notebook can run
the stages one by one:

1. :func:`prepare_source` — K independent training sets and a truth sample;
2. :func:`make_binnings` — quantile binnings of every observable from the truth sample;
3. :func:`train_network` — one network: train, take s posterior draws (flat weight vectors);
4. :func:`fill_network` — generate g events per draw in chunks straight into the histograms;
5. :func:`analyse` — amplification, coverage, JSD closure per observable binning.
"""

from __future__ import annotations

from calamp.generation import draw_events, fill_network, generation_context, write_samples
from calamp.job import (
    analyse,
    chain_diagnostics,
    estimate_seconds,
    reanalyse,
    run_job,
)
from calamp.network import load_network, network_task, run_network
from calamp.outputs import root_records
from calamp.posterior import NetworkDraws, build_model, oracle_network, train_network
from calamp.seeds import PURPOSES, derive_seed
from calamp.sources import (
    RingFeatures,
    Source,
    decode_events,
    event_observables,
    incident_energies,
    make_binnings,
    make_features,
    model_context,
    observable_names,
    prepare_source,
    split_key,
)

__all__ = [
    "PURPOSES",
    "NetworkDraws",
    "RingFeatures",
    "Source",
    "analyse",
    "build_model",
    "chain_diagnostics",
    "decode_events",
    "derive_seed",
    "draw_events",
    "estimate_seconds",
    "event_observables",
    "fill_network",
    "generation_context",
    "incident_energies",
    "load_network",
    "network_task",
    "make_binnings",
    "make_features",
    "model_context",
    "observable_names",
    "oracle_network",
    "prepare_source",
    "reanalyse",
    "root_records",
    "run_job",
    "run_network",
    "split_key",
    "train_network",
    "write_samples",
]
