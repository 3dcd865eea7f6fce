"""Exact cooperative-game algebra on all 2^n coalitions, vectorised with numpy.

A game on n players is an array whose last axis has length 2^n: entry ``mask`` is the worth of the
coalition whose members are the set bits of ``mask`` (player i is bit i). Leading axes are batch axes
(seeds, bootstrap replicates), so one call handles many games at once.

Everything here goes through the Moebius (Harsanyi) coefficients m(T) = sum_{S subset T} (-1)^{|T|-|S|} v(S):
once they are known, the Shapley value, the Banzhaf value and the Shapley / Banzhaf interaction indices are
weighted superset sums of m, computed with O(n 2^n) butterfly transforms. Independent, textbook formulas
from marginal contributions (:func:`shapley_from_values`, :func:`banzhaf_from_values`) are kept beside them
so that the tests can check one against the other. Exact computation is practical up to about 16 players.
"""

from __future__ import annotations

import math

import numpy as np


def n_players_of(game: np.ndarray) -> int:
    size = game.shape[-1]
    n = size.bit_length() - 1
    if size != 1 << n:
        raise ValueError(f"a game needs 2^n values on its last axis, got {size}")
    return n


def coalition_sizes(n: int) -> np.ndarray:
    """|S| for every mask S in 0 .. 2^n - 1."""
    sizes = np.zeros(1, dtype=np.int64)
    for _ in range(n):
        sizes = np.concatenate([sizes, sizes + 1])
    return sizes


def membership(n: int) -> np.ndarray:
    """Boolean (2^n, n) matrix: does coalition ``mask`` contain player i."""
    masks = np.arange(1 << n)
    return ((masks[:, None] >> np.arange(n)[None, :]) & 1).astype(bool)


def _butterfly(game: np.ndarray, n: int, *, sign: float, towards_supersets: bool) -> np.ndarray:
    out = np.array(game, dtype=np.float64, copy=True)
    batch = out.shape[:-1]
    for i in range(n):
        view = out.reshape(*batch, 1 << (n - i - 1), 2, 1 << i)
        if towards_supersets:  # S gets (sign) the value of S + {i}
            view[..., 0, :] += sign * view[..., 1, :]
        else:  # S + {i} gets (sign) the value of S
            view[..., 1, :] += sign * view[..., 0, :]
    return out


def moebius_transform(game: np.ndarray) -> np.ndarray:
    """Moebius coefficients m(T) of a game v, so that v(S) = sum_{T subset S} m(T)."""
    return _butterfly(game, n_players_of(game), sign=-1.0, towards_supersets=False)


def zeta_transform(moebius: np.ndarray) -> np.ndarray:
    """The game back from its Moebius coefficients: v(S) = sum_{T subset S} m(T)."""
    return _butterfly(moebius, n_players_of(moebius), sign=1.0, towards_supersets=False)


def superset_sum(values: np.ndarray) -> np.ndarray:
    """g(S) = sum_{T superset S} values(T)."""
    return _butterfly(values, n_players_of(values), sign=1.0, towards_supersets=True)


def shapley_from_moebius(moebius: np.ndarray) -> np.ndarray:
    """Shapley values phi_i = sum_{T containing i} m(T) / |T|; shape (..., n)."""
    n = n_players_of(moebius)
    sizes = coalition_sizes(n)
    weights = np.where(sizes > 0, 1.0 / np.maximum(sizes, 1), 0.0)
    return (moebius * weights) @ membership(n).astype(np.float64)


def banzhaf_from_moebius(moebius: np.ndarray) -> np.ndarray:
    """Banzhaf values beta_i = sum_{T containing i} m(T) / 2^(|T|-1); shape (..., n)."""
    n = n_players_of(moebius)
    sizes = coalition_sizes(n)
    weights = np.where(sizes > 0, 2.0 ** (1 - sizes.astype(np.float64)), 0.0)
    return (moebius * weights) @ membership(n).astype(np.float64)


def interaction_index_from_moebius(moebius: np.ndarray, order: int, kind: str = "shapley") -> np.ndarray:
    """Shapley (Grabisch-Roubens) or Banzhaf interaction index of every coalition of size ``order``.

    SII(S) = sum_{T superset S} m(T) / (|T| - |S| + 1);  BII(S) = sum_{T superset S} m(T) / 2^(|T| - |S|).
    Returns an array over all masks (..., 2^n); only entries with popcount == order are meaningful, the
    rest are zero. Order 1 gives the Shapley / Banzhaf values, order |T| of a single unanimity game its
    coefficient.
    """
    n = n_players_of(moebius)
    if not 1 <= order <= n:
        raise ValueError(f"order must be between 1 and {n}, got {order}")
    sizes = coalition_sizes(n)
    extra = sizes - order
    if kind == "shapley":
        weights = np.where(extra >= 0, 1.0 / np.maximum(extra + 1, 1), 0.0)
    elif kind == "banzhaf":
        weights = np.where(extra >= 0, 2.0 ** (-np.maximum(extra, 0).astype(np.float64)), 0.0)
    else:
        raise ValueError(f"kind must be 'shapley' or 'banzhaf', got {kind!r}")
    index = superset_sum(moebius * weights)
    return np.where(sizes == order, index, 0.0)


def shapley_from_values(game: np.ndarray) -> np.ndarray:
    """Shapley values from the definition: weighted marginal contributions over all coalitions."""
    n = n_players_of(game)
    sizes = coalition_sizes(n)
    masks = np.arange(1 << n)
    weight_by_size = np.array([math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n) for s in range(n)])
    out = np.zeros(game.shape[:-1] + (n,))
    for i in range(n):
        bit = 1 << i
        without = masks[(masks & bit) == 0]
        marginal = game[..., without | bit] - game[..., without]
        out[..., i] = marginal @ weight_by_size[sizes[without]]
    return out


def banzhaf_from_values(game: np.ndarray) -> np.ndarray:
    """Banzhaf values from the definition: the plain mean marginal contribution."""
    n = n_players_of(game)
    masks = np.arange(1 << n)
    out = np.zeros(game.shape[:-1] + (n,))
    for i in range(n):
        bit = 1 << i
        without = masks[(masks & bit) == 0]
        out[..., i] = (game[..., without | bit] - game[..., without]).mean(axis=-1)
    return out


def shapley_weight_matrix(n: int) -> np.ndarray:
    """The linear map from game values to Shapley values: phi = v @ W, W of shape (2^n, n)."""
    # Shapley values are linear in the game: row s is the value of the game that is 1 on s alone.
    return shapley_from_values(np.eye(1 << n))


def mask_of(players, names) -> int:
    index = {name: i for i, name in enumerate(names)}
    mask = 0
    for p in players:
        mask |= 1 << index[p]
    return mask


def members(mask: int, names) -> tuple:
    return tuple(name for i, name in enumerate(names) if mask >> i & 1)
