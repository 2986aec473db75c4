"""Figures read results only; side-by-side panels that a reader compares share their scales."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402


def test_mean_shower_panels_share_one_colour_scale():
    from calamp.report import mean_shower_figure

    rng = np.random.default_rng(0)
    truth = np.full((10, 10), 0.02)
    truth[4:6, 4:6] = 8.0
    draws = truth * rng.uniform(0.9, 1.1, size=(3, 4, 10, 10))
    draws[..., 0, 0] = 1e-5  # a generated corner far below the truth's smallest cell
    fig = mean_shower_figure(draws, truth)
    panels = [ax for ax in fig.axes if ax.get_images()]  # the four image panels, in order
    truth_im, gen_im, ratio_im, _ = (ax.get_images()[0] for ax in panels)
    assert truth_im.norm.vmin == gen_im.norm.vmin == 1e-5
    assert truth_im.norm.vmax == gen_im.norm.vmax == draws.mean(axis=(0, 1)).max()
    # the ratio panel is centred on 1 and carries the posterior spread per cell
    assert ratio_im.norm.vcenter == 1.0
    assert len(panels[2].texts) == 100
