"""Per-group ridge regressions, batched: one posterior per group (a user), updated and read for B rows at once."""

from __future__ import annotations

import numpy as np


class GroupRidge:
    """G independent ridge regressions of a scalar on F features, prior precision ``ridge``.

    ``A`` (G, F, F) precision matrices, ``b`` (G, F) feature-weighted targets; rows of a batch name
    their group, and a group that appears in several rows gets every row (``np.add.at``).
    """

    def __init__(self, groups: int, features: int, ridge: float) -> None:
        self.A = np.broadcast_to(ridge * np.eye(features), (groups, features, features)).copy()
        self.b = np.zeros((groups, features))

    def mean(self, groups: np.ndarray) -> np.ndarray:
        """(B, F) posterior-mean coefficients of the (B,) ``groups``."""
        return np.linalg.solve(self.A[groups], self.b[groups][..., None])[..., 0]

    def covariance(self, groups: np.ndarray) -> np.ndarray:
        """(B, F, F) posterior covariances (up to the noise variance) of the (B,) ``groups``."""
        return np.linalg.inv(self.A[groups])

    def add(self, groups: np.ndarray, features: np.ndarray, targets: np.ndarray) -> None:
        """Add the (B, F) ``features`` / (B,) ``targets`` rows to their (B,) ``groups``."""
        np.add.at(self.A, groups, features[:, :, None] * features[:, None, :])
        np.add.at(self.b, groups, features * targets[:, None])
