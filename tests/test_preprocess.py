"""Tests of calamp.preprocess: the invertible image <-> feature map."""

from __future__ import annotations

import json

import numpy as np
import pytest

from calamp.preprocess import ShowerPreprocessor


def _showers(n: int, seed: int = 0, threshold: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """Toy 10x10 showers: Gaussian blobs, ~30% empty cells, non-zero cells >= 2*threshold."""
    rng = np.random.default_rng(seed)
    inc = rng.uniform(20.0, 80.0, n)
    yy, xx = np.mgrid[0:10, 0:10]
    cx, cy = rng.normal(4.5, 0.5, (2, n))
    width = rng.uniform(0.8, 1.5, n)
    prof = np.exp(
        -((xx - cx[:, None, None]) ** 2 + (yy - cy[:, None, None]) ** 2)
        / (2 * width[:, None, None] ** 2)
    )
    img = 0.95 * inc[:, None, None] * prof / prof.sum(axis=(1, 2), keepdims=True)
    img *= rng.gamma(50.0, 1 / 50.0, img.shape)
    img[rng.uniform(size=img.shape) < 0.3] = 0.0
    img[(img > 0) & (img < 2 * threshold)] = 0.0
    return img.astype(np.float32), inc


@pytest.mark.parametrize("transform", ["logit", "log"])
@pytest.mark.parametrize("conditional", [True, False])
def test_roundtrip_shapes_and_standardisation(transform: str, conditional: bool) -> None:
    img, inc = _showers(500)
    e = inc if conditional else None
    pre = ShowerPreprocessor.fit(img, e, transform=transform, seed=1)
    feat = pre.forward(img, e, seed=2)
    assert feat.shape == (500, 101) and feat.dtype == np.float32
    # standardised on the training data (fit used other noise: means match to noise level)
    np.testing.assert_allclose(pre.forward(img, e, seed=1).mean(0), 0.0, atol=1e-4)
    back = pre.inverse(feat, e)
    assert back.shape == (500, 10, 10)
    # exact up to float32 rounding (features are float32: relative error ~1e-6 per cell)
    np.testing.assert_allclose(back, img, rtol=2e-5, atol=1e-6)
    assert np.array_equal(back > 0, img > 0)  # the dequantisation noise is removed


def test_inverse_gives_physical_images() -> None:
    img, inc = _showers(200, seed=3)
    pre = ShowerPreprocessor.fit(img, inc, threshold=1e-3)
    noisy = np.random.default_rng(4).normal(0.0, 3.0, (200, 101)).astype(np.float32)
    out = pre.inverse(noisy, inc)
    assert np.all(out >= 0)
    assert np.all((out == 0) | (out >= 1e-3))  # below threshold -> 0
    totals = inc * np.exp(noisy[:, 0] * pre.std[0] + pre.mean[0])
    has_cells = out.reshape(200, -1).sum(1) > 0
    np.testing.assert_allclose(out.reshape(200, -1).sum(1)[has_cells], totals[has_cells], rtol=1e-5)


def test_dict_roundtrip_and_errors() -> None:
    img, _ = _showers(100, seed=5)
    pre = ShowerPreprocessor.fit(img)
    d = json.loads(json.dumps(pre.to_dict()))
    pre2 = ShowerPreprocessor.from_dict(d)
    np.testing.assert_array_equal(pre2.forward(img, seed=0), pre.forward(img, seed=0))
    assert pre2.shape == (10, 10) and not pre2.conditional
    with pytest.raises(ValueError, match="incident_energy"):
        pre.forward(img, np.ones(100))
    with pytest.raises(ValueError, match="negative"):
        pre.forward(-img)
    with pytest.raises(ValueError, match="shape"):
        pre.inverse(np.zeros((3, 50)))
    with pytest.raises(ValueError, match="noise"):
        ShowerPreprocessor.fit(img, threshold=1e-4, noise=1e-3)
    with pytest.raises(ValueError, match="missing keys"):
        ShowerPreprocessor.from_dict({"shape": [10, 10]})


def test_centroid_features_are_the_smeared_centroid_and_dropped_at_decoding() -> None:
    img, inc = _showers(800, seed=5)
    smear = 0.05
    pre = ShowerPreprocessor.fit(img, inc, seed=1, centroid_smear=smear)
    assert pre.n_features == 103
    feat = pre.forward(img, inc, seed=2)
    assert feat.shape == (800, 103)
    raw = feat.astype(np.float64) * pre.std + pre.mean
    # the centroid (cells from the image centre) of the dequantised fractions, smeared by
    # `smear`: the residual has that width (3 sigma of a std from 800 events: 7.5 %)
    yy, xx = np.mgrid[0:10, 0:10]
    frac = img / img.sum(axis=(1, 2), keepdims=True)
    xc = (frac * (xx - 4.5)).sum(axis=(1, 2))
    yc = (frac * (yy - 4.5)).sum(axis=(1, 2))
    for got, want in ((raw[:, -2], xc), (raw[:, -1], yc)):
        resid = got - want
        assert abs(resid.std() / smear - 1) < 0.075 + 1e-3 / smear, resid.std()
    # decoding ignores them: the same images as without centroid features
    plain = ShowerPreprocessor.fit(img, inc, seed=1)
    np.testing.assert_allclose(
        pre.inverse(feat, inc),
        plain.inverse(plain.forward(img, inc, seed=2), inc),
        rtol=2e-5,
        atol=1e-6,
    )
    again = ShowerPreprocessor.from_dict(json.loads(json.dumps(pre.to_dict())))
    np.testing.assert_array_equal(again.forward(img, inc, seed=2), feat)
    with pytest.raises(ValueError, match="centroid_smear"):
        ShowerPreprocessor.fit(img, inc, centroid_smear=-1.0)
