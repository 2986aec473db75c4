"""Does the shower preprocessing move energy out of the hottest cell when the network's
features are noisy? (issue: generators that model showers)

Fits the :class:`~calamp.preprocess.ShowerPreprocessor` on the shipped showers, adds Gaussian
noise of width sigma (standardised feature units) to the features of the same showers, decodes
them and compares the observables with the truth. Run: ``python analysis/preprocess_roundtrip.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from calamp.io import read_showers
from calamp.observables import shower_observables
from calamp.preprocess import ShowerPreprocessor

DATA = Path(__file__).resolve().parents[1] / "data" / "shower.root"


def main() -> None:
    sh = read_showers(DATA)
    truth = shower_observables(sh.energy, sh.incident_energy)
    rng = np.random.default_rng(0)
    print(f"truth: e_max {truth['e_max'].mean():.2f} GeV, e_total {truth['e_total'].mean():.2f}"
          f" GeV, x_width {truth['x_width'].mean():.3f} mm, n_hit {truth['n_hit'].mean():.1f}")
    for transform in ("logit", "log"):
        pre = ShowerPreprocessor.fit(sh.energy, sh.incident_energy, transform=transform)
        feats = pre.forward(sh.energy, sh.incident_energy)
        for sigma in (0.0, 0.05, 0.1, 0.2, 0.4):
            noisy = feats + sigma * rng.standard_normal(feats.shape)
            obs = shower_observables(pre.inverse(noisy, sh.incident_energy), sh.incident_energy)
            print(f"{transform:5s} sigma={sigma:4.2f}: e_max {obs['e_max'].mean():6.2f} GeV "
                  f"(x{obs['e_max'].mean() / truth['e_max'].mean():.3f}), e_total "
                  f"{obs['e_total'].mean():6.2f}, x_width {obs['x_width'].mean():.3f}, "
                  f"n_hit {obs['n_hit'].mean():.1f}")


if __name__ == "__main__":
    main()
