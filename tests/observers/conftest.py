"""Signal-known-exactly / background-known-exactly Gaussian ROIs with closed-form detectability."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest


@dataclasses.dataclass(frozen=True)
class SKE:
    """ROIs g = b·s + n, n ~ N(0, K), b ∈ {0, 1}; s and K known."""

    shape: tuple[int, int]
    signal: np.ndarray  # (npix,)
    cov: np.ndarray  # (npix, npix)
    chol: np.ndarray

    def sample(self, rng: np.random.Generator, n: int, present: bool) -> np.ndarray:
        z = rng.standard_normal((n, self.signal.size))
        g = z @ self.chol.T + (self.signal if present else 0.0)
        return g.reshape((n, *self.shape))

    def dprime_of(self, template: np.ndarray) -> float:
        """Exact d′ of a linear template: wᵀs / sqrt(wᵀKw)."""
        w = np.asarray(template, dtype=float).ravel()
        return float(w @ self.signal / np.sqrt(w @ self.cov @ w))

    @property
    def hotelling(self) -> float:
        return float(np.sqrt(self.signal @ np.linalg.solve(self.cov, self.signal)))

    @property
    def npw(self) -> float:
        s = self.signal
        return float(s @ s / np.sqrt(s @ self.cov @ s))


def make_ske(n: int, *, kind: str, amplitude: float, sigma_px: float = 2.0) -> SKE:
    c = (n - 1) / 2
    x, y = np.meshgrid(np.arange(n) - c, np.arange(n) - c, indexing="ij")
    s = amplitude * np.exp(-(x**2 + y**2) / (2 * sigma_px**2)).ravel()
    if kind == "white":
        cov = np.eye(n * n)
    else:  # Gaussian-kernel correlated noise (length 3 px) plus a white floor
        p = np.stack([x.ravel(), y.ravel()], axis=1)
        d2 = ((p[:, None, :] - p[None, :, :]) ** 2).sum(-1)
        cov = 0.8 * np.exp(-d2 / (2 * 3.0**2)) + 0.2 * np.eye(n * n)
    return SKE((n, n), s, cov, np.linalg.cholesky(cov))


@pytest.fixture(scope="session")
def ske_white() -> SKE:
    return make_ske(16, kind="white", amplitude=0.6)


@pytest.fixture(scope="session")
def ske_correlated() -> SKE:
    return make_ske(16, kind="correlated", amplitude=2.0)


@pytest.fixture(scope="session")
def ske_correlated_24() -> SKE:
    return make_ske(24, kind="correlated", amplitude=2.0)
