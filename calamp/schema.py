"""The documented structure of ``results.json`` and a validator for it (pure Python).

Top level::

    calamp_version: str            versions: {package: version}
    config: {option: value}        seeds: {master: int, derivation: str}
    data: {kind, source, training_sets, truth, truth_is_exact, n_train, n_networks, n_draws,
           n_generated_per_draw, bin_probabilities, generation_noise, n_truth}
    networks: [ {n_train, batch_size, fit, wall_seconds, generate_seconds, ...} ]  (K entries)
    binnings: { "OBS/qN": BINNING }
    summary: [ {binning, n_bins, n_prime, n_prime_is_bound, amplification, amplification_low,
                amplification_high, amplification_paper,
                noise_fraction, mad, mad_floor, calibration, n_eq, n_eq_is_bound,
                true_amplification, verdict, generated_for_noise_10pct,
                common_noise_share (null unless generation_noise is common)} ]
    timings: {binning_seconds, statistics_seconds, total_seconds, ...}
    figures: [relative PNG paths]   (absent with --no-plots)

BINNING::

    observable, n_quantiles, n_bins, n_networks, shape [per axis], edges [[...] per axis],
    truth [B], n_truth
    amplification: {n_prime [K], n_prime_low [K], n_prime_high [K], is_bound [K],
                    precision [K], precision_err [K], factor [K],
                    combined: {n_prime, n_prime_low, n_prime_high, is_bound, precision,
                               precision_err, precision_spread},
                    mean_factor, mean_factor_low, mean_factor_high, n_prime_paper [K],
                    mean_factor_paper, noise_fraction [K], n_generated_per_draw, form,
                    estimate_used, per_bin_mean [B]}
    coverage: {levels [L], empirical [L], mad, mad_floor: {mean, q95, limit}, state,
               noise_dominated, per_network [K][L], mad_axis, profile, grid_shape,
               band_low? [L], band_high? [L], mad_std?, common_noise_share? (common
               generation noise: the shared noise offset / weight spread; the state is
               "not judged (common noise)" above 0.1)}
    closure: {jsd [K], n_eq [K], n_eq_low [K], n_eq_high [K], is_bound [K], amplification [K],
              precision [K], precision_err [K], combined: {jsd, n_eq, ..., verdict}, n_train,
              n_truth, jsd_train [K], n_eq_train [K], generated_closer_than_train [K],
              n_prime_mean, n_prime_is_bound, n_eq_mean, n_eq_is_bound, ratio, z, verdict}

The statistics are defined in :mod:`calamp.stats` (n' = combined n_prime is the unbiased
binomial estimate; lower bounds are flagged by ``is_bound``).

Non-finite numbers are written as ``null``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["SchemaError", "validate_results"]

_TOP = {
    "calamp_version": str,
    "versions": dict,
    "config": dict,
    "seeds": dict,
    "data": dict,
    "networks": list,
    "binnings": dict,
    "summary": list,
    "timings": dict,
}
_DATA = (
    "kind",
    "source",
    "training_sets",
    "truth",
    "truth_is_exact",
    "n_train",
    "n_networks",
    "n_draws",
    "n_generated_per_draw",
    "n_truth",
)
_BINNING = {
    "observable": str,
    "n_quantiles": int,
    "n_bins": int,
    "shape": list,
    "edges": list,
    "truth": list,
    "amplification": dict,
    "coverage": dict,
    "closure": dict,
}
_AMP = (
    "n_prime",
    "n_prime_low",
    "n_prime_high",
    "is_bound",
    "factor",
    "combined",
    "mean_factor",
    "n_prime_paper",
    "mean_factor_paper",
    "noise_fraction",
    "estimate_used",
    "form",
    "per_bin_mean",
)
_COV = ("levels", "empirical", "mad", "mad_floor", "state", "noise_dominated", "per_network")
_CLO = (
    "jsd",
    "n_eq",
    "amplification",
    "jsd_train",
    "n_eq_train",
    "n_prime_mean",
    "n_eq_mean",
    "n_eq_is_bound",
    "verdict",
)
_ROW = (
    "binning",
    "n_bins",
    "n_prime",
    "n_prime_is_bound",
    "amplification",
    "amplification_paper",
    "noise_fraction",
    "mad",
    "mad_floor",
    "calibration",
    "n_eq",
    "true_amplification",
    "verdict",
)


class SchemaError(ValueError):
    """``results.json`` does not have the documented structure; the message names the key."""


def _need(obj: Mapping[str, Any], keys, where: str) -> None:
    for key in keys:
        if key not in obj:
            msg = f"{where}: missing key {key!r}"
            raise SchemaError(msg)


def _types(obj: Mapping[str, Any], spec: Mapping[str, type], where: str) -> None:
    _need(obj, spec, where)
    for key, typ in spec.items():
        if not isinstance(obj[key], typ):
            msg = f"{where}.{key}: expected {typ.__name__}, got {type(obj[key]).__name__}"
            raise SchemaError(msg)


def validate_results(results: Mapping[str, Any]) -> None:
    """Raise :class:`SchemaError` unless ``results`` follows the documented structure,
    including consistent array lengths (K networks, B bins, L levels)."""
    _types(results, _TOP, "results")
    _need(results["data"], _DATA, "results.data")
    k = results["data"]["n_networks"]
    if len(results["networks"]) != k:
        msg = f"results.networks: expected {k} entries, got {len(results['networks'])}"
        raise SchemaError(msg)
    for key, b in results["binnings"].items():
        where = f"results.binnings[{key!r}]"
        _types(b, _BINNING, where)
        n_bins = b["n_bins"]
        if len(b["truth"]) != n_bins:
            msg = f"{where}.truth: expected {n_bins} values, got {len(b['truth'])}"
            raise SchemaError(msg)
        _need(b["amplification"], _AMP, where + ".amplification")
        _need(b["coverage"], _COV, where + ".coverage")
        _need(b["closure"], _CLO, where + ".closure")
        for part, name in (("amplification", "n_prime"), ("closure", "n_eq")):
            if len(b[part][name]) != k:
                msg = f"{where}.{part}.{name}: expected {k} values (one per network)"
                raise SchemaError(msg)
        if len(b["amplification"]["per_bin_mean"]) != n_bins:
            msg = f"{where}.amplification.per_bin_mean: expected {n_bins} values"
            raise SchemaError(msg)
        if len(b["coverage"]["levels"]) != len(b["coverage"]["empirical"]):
            msg = f"{where}.coverage: levels and empirical differ in length"
            raise SchemaError(msg)
    if len(results["summary"]) != len(results["binnings"]):
        msg = "results.summary: expected one row per binning"
        raise SchemaError(msg)
    for i, row in enumerate(results["summary"]):
        _need(row, _ROW, f"results.summary[{i}]")
