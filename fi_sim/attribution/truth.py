"""The exact truth of a fully measured response surface: fANOVA, Sobol, Shapley effects, switching games.

Two questions have exact answers once every cell has been measured:

* **Global (variance) attribution** under the uniform product design (every level of every factor equally
  likely, independently): the functional ANOVA (Hoeffding) decomposition Y = sum_S f_S(X_S) into centred,
  orthogonal terms, the variance V_S of each term, Sobol indices (first-order V_i / V, closed
  sum_{T subset S} V_T / V, total sum_{T containing i} V_T / V) and Shapley effects, the Shapley values of the
  variance game v(S) = Var E[Y | X_S], whose Moebius coefficients are exactly the V_S, so that
  Sh_i = sum_{T containing i} V_T / |T|.
* **Attribution of one gain**, from a baseline cell to a target cell: the switching game
  v(S) = Y(target levels on S, baseline levels elsewhere), its Moebius coefficients, Shapley, Banzhaf and
  interaction indices (:class:`SwitchGame`).

All of it is vectorised numpy over the whole grid (2^n subsets, n up to about 10-12 factors in practice).
Surfaces with a ``seed`` dimension are reduced to their seed-mean first; :func:`effect_summary` adds seed
standard errors.
"""

from __future__ import annotations

import itertools
from typing import Any, Iterable, Mapping, cast

import numpy as np
import xarray as xr

from fi_sim.errors import invalid

from . import cooperative as coop
from ._surface import Surface, as_surface, default_endpoints, full_assignment, ordered, term_name
from .uncertainty import (
    DEFAULT_N_BOOT,
    DEFAULT_RNG_SEED,
    bootstrap_cell_means,
    bootstrap_seed_indices,
    complete_replicates,
    summarize_replicates,
)

# ----------------------------------------------------------------------------------------------------------
# numpy kernels: ``values`` has ``n_batch`` leading batch axes, then one axis per factor


def _mask_axes(mask: int, n_factors: int) -> list[int]:
    return [i for i in range(n_factors) if mask >> i & 1]


def _conditional_means(values: np.ndarray, n_batch: int) -> dict[int, np.ndarray]:
    """E[Y | X_S] for every subset S (bitmask), each keeping the batch axes and the axes of S in order.

    Walks the subset lattice downwards: S is the mean of S + {j} over j's axis, j the lowest missing factor,
    so every table costs one pass over a table already computed.
    """
    n = values.ndim - n_batch
    full = (1 << n) - 1
    means = {full: values}
    for mask in sorted(range(full), key=lambda m: -bin(m).count("1")):
        j = next(i for i in range(n) if not mask >> i & 1)
        parent = mask | (1 << j)
        axis = n_batch + bin(parent & ((1 << j) - 1)).count("1")
        means[mask] = means[parent].mean(axis=axis)
    return means


def _centre(table: np.ndarray, axes: Iterable[int]) -> np.ndarray:
    """Apply (I - mean over axis) along each axis: the projection onto functions centred in every argument."""
    for axis in axes:
        table = table - table.mean(axis=axis, keepdims=True)
    return table


def _effect_tables(values: np.ndarray, n_batch: int) -> dict[int, np.ndarray]:
    """The fANOVA term f_S for every subset S: the conditional mean E[Y | X_S], centred along each of S's axes."""
    means = _conditional_means(values, n_batch)
    return {mask: _centre(table, range(n_batch, table.ndim)) for mask, table in means.items()}


def _variance_terms(values: np.ndarray, n_batch: int = 0) -> np.ndarray:
    """V_S = Var f_S for every subset S, on the last axis (2^n); V of the empty set is 0."""
    n = values.ndim - n_batch
    out = np.zeros(values.shape[:n_batch] + (1 << n,))
    for mask, effect in _effect_tables(values, n_batch).items():
        if mask:
            out[..., mask] = (effect**2).reshape(effect.shape[:n_batch] + (-1,)).mean(axis=-1)
    return out


def _term_variance(values: np.ndarray, n_batch: int, mask: int) -> np.ndarray:
    """V_S of one subset, computed directly (cheap when only low-order terms are wanted)."""
    n = values.ndim - n_batch
    outside = tuple(n_batch + i for i in range(n) if not mask >> i & 1)
    table = values.mean(axis=outside) if outside else values
    effect = _centre(table, range(n_batch, table.ndim))
    return (effect**2).reshape(effect.shape[:n_batch] + (-1,)).mean(axis=-1)


def _total_variance(values: np.ndarray, n_batch: int) -> np.ndarray:
    return values.reshape(values.shape[:n_batch] + (-1,)).var(axis=-1)


def _closed_variance_without(values: np.ndarray, n_batch: int, axis: int) -> np.ndarray:
    """Var E[Y | X_{-i}]: the variance left when factor i is averaged out (for total Sobol indices)."""
    return _total_variance(values.mean(axis=n_batch + axis), n_batch)


# ----------------------------------------------------------------------------------------------------------
# public API: global attribution


class FanovaDecomposition(dict):
    """fANOVA terms keyed by a tuple of factor names (in the surface's order); ``()`` is the grand mean.

    Each value is a DataArray over the term's factors; its ``attrs['variance']`` is Var f_S under the uniform
    design. The terms are centred, mutually orthogonal and sum to the (seed-mean) surface.
    """

    factors: tuple[str, ...]
    total_variance: float

    @property
    def variances(self) -> xr.DataArray:
        """Var f_S of every non-empty term, over a ``term`` dimension (coordinates ``term``, ``order``)."""
        keys = [k for k in self if k]
        return xr.DataArray(
            np.array([self[k].attrs["variance"] for k in keys]),
            dims=["term"],
            coords={"term": [term_name(k) for k in keys], "order": ("term", [len(k) for k in keys])},
            name="variance",
        )

    def reconstruct(self) -> xr.DataArray:
        """The sum of all terms, broadcast over every factor: equals the seed-mean surface."""
        total = sum(self.values())
        return total.transpose(*self.factors)


def fanova(y: xr.DataArray) -> FanovaDecomposition:
    """Functional ANOVA (Hoeffding) decomposition of the seed-mean surface under the uniform product design.

    Returns a mapping from a tuple of factor names (every subset, in the surface's dimension order, the empty
    tuple for the grand mean) to the effect DataArray of that subset.
    """
    surface = as_surface(y)
    n = surface.n_factors
    out = FanovaDecomposition()
    out.factors = surface.factors
    out.total_variance = float(surface.mean.var())
    tables = _effect_tables(surface.mean, 0)
    for size in range(n + 1):
        for combo in itertools.combinations(range(n), size):
            mask = sum(1 << i for i in combo)
            names = tuple(surface.factors[i] for i in combo)
            effect = tables[mask]
            out[names] = xr.DataArray(
                effect,
                dims=list(names),
                coords=surface.coords(names),
                name=term_name(names),
                attrs={"variance": float((effect**2).mean()) if names else 0.0, "order": size},
            )
    return out


def fanova_variances(y: xr.DataArray) -> xr.DataArray:
    """Var f_S of every non-empty subset S, over a ``term`` dimension with an ``order`` coordinate."""
    surface = as_surface(y)
    variances = _variance_terms(surface.mean)
    masks = _masks_by_order(surface.n_factors)
    names = [term_name(coop.members(m, surface.factors)) for m in masks]
    return xr.DataArray(
        variances[masks],
        dims=["term"],
        coords={"term": names, "order": ("term", [bin(m).count("1") for m in masks])},
        name="variance",
        attrs={"total_variance": float(surface.mean.var())},
    )


def _masks_by_order(n: int, max_order: int | None = None) -> list[int]:
    max_order = n if max_order is None else min(max_order, n)
    return [sum(1 << i for i in combo) for size in range(1, max_order + 1) for combo in itertools.combinations(range(n), size)]


def _safe_ratio(numerator, denominator):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1.0), np.nan)


def _sobol_arrays(values: np.ndarray, n_batch: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    variances = _variance_terms(values, n_batch)
    n = values.ndim - n_batch
    total = _total_variance(values, n_batch)
    singletons = variances[..., [1 << i for i in range(n)]]
    containing = variances @ coop.membership(n).astype(np.float64)
    return _safe_ratio(singletons, total[..., None]), _safe_ratio(containing, total[..., None]), total


def sobol_indices(y: xr.DataArray) -> xr.Dataset:
    """First-order and total Sobol indices of every factor, over a ``factor`` dimension.

    first_i = V_i / V and total_i = sum_{T containing i} V_T / V, under the uniform design on the seed-mean
    surface. A constant surface (V = 0) gives NaN.
    """
    surface = as_surface(y)
    first, total, variance = _sobol_arrays(surface.mean)
    coords = {"factor": list(surface.factors)}
    return xr.Dataset(
        {"first": ("factor", first), "total": ("factor", total)},
        coords=coords,
        attrs={"total_variance": float(variance), "design": "uniform product design over the levels"},
    )


def sobol_closed(y: xr.DataArray, factors: Iterable[str]) -> float:
    """Closed Sobol index of a subset S: Var E[Y | X_S] / Var Y = sum_{non-empty T subset S} V_T / V."""
    surface = as_surface(y)
    names = list(factors) if not isinstance(factors, str) else [factors]
    for name in names:
        surface.factor_index(name, "factors")
    keep = tuple(surface.factor_index(f) for f in ordered(names, surface.factors))
    outside = tuple(i for i in range(surface.n_factors) if i not in keep)
    conditional = surface.mean.mean(axis=outside) if outside else surface.mean
    return float(_safe_ratio(np.asarray(conditional.var()), np.asarray(surface.mean.var())))


def shapley_effects(y: xr.DataArray, *, normalize: bool = False) -> xr.DataArray:
    """Shapley effects: Shapley values of the variance game v(S) = Var E[Y | X_S], over ``factor``.

    Exact over all 2^n coalitions. They sum to Var Y (units of Y squared); ``normalize=True`` divides by
    Var Y so that they sum to 1.
    """
    surface = as_surface(y)
    variances = _variance_terms(surface.mean)
    effects = coop.shapley_from_moebius(variances)
    total = float(surface.mean.var())
    if normalize:
        effects = _safe_ratio(effects, np.asarray(total))
    return xr.DataArray(
        effects,
        dims=["factor"],
        coords={"factor": list(surface.factors)},
        name="shapley_effect",
        attrs={"total_variance": total, "normalized": bool(normalize)},
    )


# ----------------------------------------------------------------------------------------------------------
# the switching game: attribution of one gain


class SwitchGame:
    """The switching game between a baseline cell and a target cell.

    v(S) = Y(target levels on the factors in S, baseline levels elsewhere): v(empty) is the baseline outcome,
    v(all) the target outcome, and any efficient attribution splits the gain v(all) - v(empty). Players are
    the factors, in the surface's order; a factor whose target level equals its baseline level is a null
    player (every value it gets is 0).
    """

    def __init__(self, factors, baseline, target, values, per_seed=None):
        self.factors: tuple[str, ...] = tuple(factors)
        self.baseline: dict[str, Any] = dict(baseline)
        self.target: dict[str, Any] = dict(target)
        self.values = np.asarray(values, dtype=np.float64)
        """v(S) for every coalition mask (player i = bit i, in ``factors`` order)."""
        self.per_seed = None if per_seed is None else np.asarray(per_seed, dtype=np.float64)
        """v(S) per seed, shape (2^n, n_seeds), NaN where that run failed; None without seeds."""

    # --- values
    def mask(self, coalition: Iterable[str]) -> int:
        coalition = [coalition] if isinstance(coalition, str) else list(coalition)
        for name in coalition:
            if name not in self.factors:
                raise invalid("coalition", name, f"factors among {list(self.factors)}")
        return coop.mask_of(coalition, self.factors)

    def value(self, coalition: Iterable[str] = ()) -> float:
        """v(S): the outcome with the factors in ``coalition`` switched to their target levels."""
        return float(self.values[self.mask(coalition)])

    @property
    def gain(self) -> float:
        return float(self.values[-1] - self.values[0])

    def _by_factor(self, array: np.ndarray) -> dict[str, float]:
        return {f: float(v) for f, v in zip(self.factors, array)}

    def _by_coalition(self, array: np.ndarray, masks: Iterable[int]) -> dict[frozenset, float]:
        return {frozenset(coop.members(m, self.factors)): float(array[m]) for m in masks}

    # --- exact quantities
    def moebius(self) -> dict[frozenset, float]:
        """Moebius (Harsanyi) coefficient m(T) of every coalition, the empty one (= baseline outcome) included."""
        return self._by_coalition(coop.moebius_transform(self.values), range(len(self.values)))

    def shapley(self) -> dict[str, float]:
        """Shapley values: phi_i = sum_{T containing i} m(T) / |T|; they sum to the gain."""
        return self._by_factor(coop.shapley_from_moebius(coop.moebius_transform(self.values)))

    def banzhaf(self) -> dict[str, float]:
        """Banzhaf values: the mean marginal effect of switching i over all 2^(n-1) settings of the others.

        Equal to the main effect of i in the full 2^n factorial on the baseline / target levels.
        """
        return self._by_factor(coop.banzhaf_from_moebius(coop.moebius_transform(self.values)))

    def interactions(self, order: int = 2, index: str = "shapley") -> dict[frozenset, float]:
        """Shapley interaction index (Grabisch-Roubens SII; ``index='banzhaf'``: BII) of every coalition of size ``order``."""
        n = len(self.factors)
        if not isinstance(order, (int, np.integer)) or not 1 <= order <= n:
            raise invalid("order", order, f"an integer between 1 and {n} (the number of factors)")
        if index not in ("shapley", "banzhaf"):
            raise invalid("index", index, "'shapley' (SII) or 'banzhaf' (BII)")
        values = coop.interaction_index_from_moebius(coop.moebius_transform(self.values), int(order), index)
        masks = [m for m in range(1 << n) if bin(m).count("1") == order]
        return self._by_coalition(values, masks)

    def one_factor_at_a_time(self) -> dict[str, float]:
        """v({i}) - v(empty): switching i alone from the baseline. Equals the singleton Moebius term m({i})."""
        return {f: float(self.values[1 << i] - self.values[0]) for i, f in enumerate(self.factors)}

    def leave_one_out(self) -> dict[str, float]:
        """v(all) - v(all but i): what is lost by reverting i alone at the target. Equals sum_{T containing i} m(T)."""
        full = len(self.values) - 1
        return {f: float(self.values[full] - self.values[full & ~(1 << i)]) for i, f in enumerate(self.factors)}

    def to_dataset(self) -> xr.Dataset:
        """Shapley, Banzhaf, one-factor-at-a-time and leave-one-out values over a ``factor`` dimension."""
        arrays = _switch_arrays(self.values[None, :])
        return xr.Dataset(
            {name: ("factor", values[0]) for name, values in arrays.items()},
            coords={"factor": list(self.factors)},
            attrs={"gain": self.gain, "baseline": str(self.baseline), "target": str(self.target)},
        )

    def uncertainty(self, *, n_boot: int = DEFAULT_N_BOOT, rng_seed: int = DEFAULT_RNG_SEED, level: float = 0.95) -> xr.Dataset:
        """Seed bootstrap of :meth:`to_dataset`: ``<q>``, ``<q>_se``, ``<q>_ci_low``, ``<q>_ci_high`` for each quantity.

        Uses the same joint seed draws as :func:`~fi_sim.attribution.uncertainty.seed_uncertainty`. Without
        seeds, or with one, the errors are NaN.
        """
        from .uncertainty import _check_options

        _check_options(n_boot, level)
        estimate = self.to_dataset()
        out = estimate.copy()
        replicates = None
        if self.per_seed is not None and self.per_seed.shape[1] >= 2:
            indices = bootstrap_seed_indices(self.per_seed.shape[1], n_boot, rng_seed)
            means = bootstrap_cell_means(self.per_seed, indices)  # (B, 2^n)
            keep = complete_replicates(means)
            if keep.sum() >= 2:
                replicates = _switch_arrays(means[keep])
        for name in estimate.data_vars:
            if replicates is not None:
                se, low, high = summarize_replicates(replicates[cast(str, name)], level)
            else:
                se = low = high = np.full(len(self.factors), np.nan)
            for suffix, values in (("se", se), ("ci_low", low), ("ci_high", high)):
                out[f"{name}_{suffix}"] = ("factor", np.asarray(values))
        out.attrs.update(n_boot=int(n_boot), rng_seed=int(rng_seed), level=float(level), n_valid=0 if replicates is None else int(keep.sum()))
        return out


def _switch_arrays(games: np.ndarray) -> dict[str, np.ndarray]:
    """Per-factor quantities of a batch of switching games (B, 2^n), each of shape (B, n)."""
    n = coop.n_players_of(games)
    moebius = coop.moebius_transform(games)
    singles = np.array([1 << i for i in range(n)])
    full = (1 << n) - 1
    return {
        "shapley": coop.shapley_from_moebius(moebius),
        "banzhaf": coop.banzhaf_from_moebius(moebius),
        "ofat": games[:, singles] - games[:, :1],
        "loo": games[:, full : full + 1] - games[:, full & ~singles],
    }


def _switch_indices(surface: Surface, baseline: dict, target: dict) -> np.ndarray:
    """Cell indices of every coalition's cell, shape (2^n, n_factors)."""
    n = surface.n_factors
    base = np.array([surface.level_index(f, baseline[f], f"baseline[{f!r}]") for f in surface.factors])
    top = np.array([surface.level_index(f, target[f], f"target[{f!r}]") for f in surface.factors])
    switched = coop.membership(n)
    return np.where(switched, top[None, :], base[None, :])


def switch_game(y: xr.DataArray, baseline: Mapping[str, Any] | None = None, target: Mapping[str, Any] | None = None) -> SwitchGame:
    """The switching game from a baseline cell to a target cell (dicts factor -> level naming every factor).

    ``None`` takes the surface's ``attrs['baseline']`` / ``attrs['target']`` if it has them, else the first
    (baseline) and last (target) level of every factor.
    """
    surface = as_surface(y)
    default_base, default_top = default_endpoints(surface, y.attrs)
    baseline = default_base if baseline is None else full_assignment(surface, baseline, "baseline")
    target = default_top if target is None else full_assignment(surface, target, "target")
    cells = tuple(_switch_indices(surface, baseline, target).T)
    per_seed = None if surface.per_seed is None else surface.per_seed[cells]
    return SwitchGame(surface.factors, baseline, target, surface.mean[cells], per_seed)


# ----------------------------------------------------------------------------------------------------------
# the summary table the simulator's report uses

CONTRAST_CONVENTION = (
    "2^k factorial effect = contrast / 2^(k-1) = mean(Y | sign +) - mean(Y | sign -), where the sign of a cell "
    "is the product over the term's factors of (-1 at the first level, +1 at the second); for a main effect "
    "that is mean(Y | second level) - mean(Y | first level); for A:B it is half the difference-in-differences "
    "{[Y(A2,B2) - Y(A1,B2)] - [Y(A2,B1) - Y(A1,B1)]} / 2, averaged over the other factors"
)


def _signs(surface: Surface, mask: int) -> np.ndarray | None:
    """+-1 sign of every cell for a term whose factors all have exactly two levels; None otherwise."""
    axes = _mask_axes(mask, surface.n_factors)
    if any(len(surface.levels[surface.factors[a]]) != 2 for a in axes):
        return None
    sign = np.ones(surface.shape)
    for a in axes:
        shape = [1] * surface.n_factors
        shape[a] = 2
        sign = sign * np.array([-1.0, 1.0]).reshape(shape)
    return sign


def effect_summary(
    y: xr.DataArray,
    max_order: int = 2,
    *,
    n_boot: int = DEFAULT_N_BOOT,
    rng_seed: int = DEFAULT_RNG_SEED,
) -> xr.Dataset:
    """Main effects and interactions up to ``max_order``, with seed standard errors, over a ``term`` dimension.

    Variables (coordinates ``term`` such as ``"scaffold"`` or ``"base:data"``, and ``order``):

    * ``variance``: Var f_S of the fANOVA term under the uniform design, on the seed-mean surface;
    * ``rms`` = sqrt(variance), in units of Y; ``rms_se``: its seed standard error, the standard deviation of
      rms over ``n_boot`` bootstrap replicates that resample seed indices with replacement jointly across
      cells (``numpy.random.default_rng(rng_seed)``, default seed 0);
    * ``contrast``: for terms whose factors all have exactly 2 levels, the classical 2^k factorial effect
      (see ``CONTRAST_CONVENTION``), NaN otherwise; ``contrast_se``: the standard deviation over seeds of the
      per-seed contrast divided by sqrt(number of seeds), ddof=1 (seeds with a failed cell are left out;
      NaN with fewer than 2 seeds);
    * ``share`` = variance / total variance (the Sobol index of the term); ``sobol_first`` (= share, main
      effects only) and ``sobol_total`` (main effects only), NaN on interaction terms.

    For a two-level term, |contrast| = 2 * rms.
    """
    from .uncertainty import _check_options

    _check_options(n_boot, 0.95)
    if not isinstance(max_order, (int, np.integer)) or isinstance(max_order, bool) or max_order < 1:
        raise invalid("max_order", max_order, "an integer >= 1 (1: main effects, 2: and pairwise interactions, ...)")
    surface = as_surface(y)
    n = surface.n_factors
    masks = _masks_by_order(n, int(max_order))
    names = [term_name(coop.members(m, surface.factors)) for m in masks]
    orders = [bin(m).count("1") for m in masks]

    variance = np.array([float(_term_variance(surface.mean, 0, m)) for m in masks])
    total = float(surface.mean.var())
    share = _safe_ratio(variance, np.asarray(total))
    sobol_first = np.where(np.array(orders) == 1, share, np.nan)
    sobol_total = np.full(len(masks), np.nan)
    for t, m in enumerate(masks):
        if orders[t] == 1:
            axis = _mask_axes(m, n)[0]
            sobol_total[t] = float(_safe_ratio(np.asarray(total - _closed_variance_without(surface.mean, 0, axis)), np.asarray(total)))

    rms = np.sqrt(variance)
    rms_se = np.full(len(masks), np.nan)
    n_valid = 0
    if surface.n_seeds >= 2:
        assert surface.per_seed is not None  # n_seeds >= 2 implies per-seed values
        indices = bootstrap_seed_indices(surface.n_seeds, n_boot, rng_seed)
        chunks = []
        # Bounded memory: a chunk of replicates holds chunk * cells * seeds numbers at a time.
        chunk = max(1, int(2e7 // max(1, surface.per_seed.size)))
        for start in range(0, n_boot, chunk):
            means = bootstrap_cell_means(surface.per_seed, indices[start : start + chunk])
            means = means[complete_replicates(means)]
            chunks.append(np.sqrt(np.stack([_term_variance(means, 1, m) for m in masks], axis=-1)))
        replicates = np.concatenate(chunks, axis=0)
        n_valid = replicates.shape[0]
        if n_valid >= 2:
            rms_se = replicates.std(axis=0, ddof=1)

    contrast = np.full(len(masks), np.nan)
    contrast_se = np.full(len(masks), np.nan)
    for t, m in enumerate(masks):
        sign = _signs(surface, m)
        if sign is None:
            continue
        contrast[t] = 2.0 * float((sign * surface.mean).mean())
        if surface.n_seeds >= 2:
            per_seed = 2.0 * (sign[..., None] * surface.per_seed).reshape(-1, surface.n_seeds).mean(axis=0)
            per_seed = per_seed[np.isfinite(per_seed)]
            if per_seed.size >= 2:
                contrast_se[t] = per_seed.std(ddof=1) / np.sqrt(per_seed.size)

    return xr.Dataset(
        {
            "variance": ("term", variance),
            "rms": ("term", rms),
            "rms_se": ("term", rms_se),
            "contrast": ("term", contrast),
            "contrast_se": ("term", contrast_se),
            "share": ("term", share),
            "sobol_first": ("term", sobol_first),
            "sobol_total": ("term", sobol_total),
        },
        coords={"term": names, "order": ("term", orders)},
        attrs={
            "total_variance": total,
            "grand_mean": float(surface.mean.mean()),
            "n_seeds": surface.n_seeds,
            "n_boot": int(n_boot),
            "n_boot_valid": int(n_valid),
            "rng_seed": int(rng_seed),
            "contrast_convention": CONTRAST_CONVENTION,
            "design": "uniform product design over the levels; seed-mean surface",
        },
    )
