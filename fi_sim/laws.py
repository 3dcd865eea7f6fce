"""Published scaling laws of post-training, fitted by least squares (numpy only).

Two laws, three forms, each linear in its coefficients, so each fit is one ordinary least-squares solve:

* **Gao, Schulman & Hilton (2022)**, *Scaling Laws for Reward Model Overoptimization* (arXiv:2210.10760).
  With ``d = sqrt(KL(policy || base))`` in nats, the gold score's gain over the start ``R`` follows

  - best-of-n (``"gao_bon"``): ``R(d) = d (alpha - beta d)``, regressors ``(d, -d^2)``, no intercept;
  - RL (``"gao_rl"``): ``R(d) = d (alpha - beta log d)``, regressors ``(d, -d log d)``, no intercept, with
    ``d log d -> 0`` at ``d = 0``.

  A point at ``d = 0`` is predicted as ``R = 0`` by both forms (the gain over the start is zero there by
  definition). Best-of-n's KL is known in closed form: :func:`bon_kl`, ``log n - (n - 1) / n``.

* **Cui et al. (2025)**, *The Entropy Mechanism of Reinforcement Learning for Reasoning Language Models*
  (arXiv:2505.22617): along RL training, true accuracy ``R`` against policy entropy ``H`` follows
  ``R = -a exp(H) + b`` (``"cui_entropy"``), regressor ``-exp(H)`` with an intercept.

:func:`fit` fits one curve, :func:`fit_seeds` fits every seed of a ``[seed, point]`` array and all seeds
pooled, with Student-t intervals over seeds (:meth:`SeedFits.interval`), and :func:`curve_points` turns a
run's KL and true-accuracy curves into Gao's ``(d, gain)`` points. Bad input raises
:class:`~fi_sim.errors.ValidationError` (a ``ValueError``) naming the argument.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import overload

import numpy as np
from numpy.typing import ArrayLike

from fi_sim.errors import invalid

FORMS = ("gao_bon", "gao_rl", "cui_entropy")
_COEF_NAMES = {"gao_bon": ("alpha", "beta"), "gao_rl": ("alpha", "beta"), "cui_entropy": ("a", "b")}

# Two-sided 95% Student-t quantiles t_{0.975, df} for df = 1..30, used only when scipy is not installed.
_T975 = (
    12.706204736, 4.302652730, 3.182446305, 2.776445105, 2.570581836, 2.446911851, 2.364624252, 2.306004135,
    2.262157163, 2.228138852, 2.200985160, 2.178812830, 2.160368656, 2.144786688, 2.131449546, 2.119905299,
    2.109815578, 2.100922040, 2.093024054, 2.085963447, 2.079613845, 2.073873068, 2.068657610, 2.063898562,
    2.059538553, 2.055529439, 2.051830516, 2.048407142, 2.045229642, 2.042272456,
)


def _check_form(form: str) -> None:
    if form not in FORMS:
        raise invalid("form", form, f"one of {', '.join(FORMS)}")


def _d_log_d(d: np.ndarray) -> np.ndarray:
    """``d log d`` with its limit 0 at ``d = 0`` (nan for negative d)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(d == 0, 0.0, d * np.log(np.where(d == 0, 1.0, d)))


def _design(form: str, x: np.ndarray) -> np.ndarray:
    """The regressors of ``form`` at ``x``, one column per coefficient (intercept last for cui_entropy)."""
    if form == "gao_bon":
        return np.stack([x, -(x**2)], axis=-1)
    if form == "gao_rl":
        return np.stack([x, -_d_log_d(x)], axis=-1)
    with np.errstate(over="ignore"):
        return np.stack([-np.exp(x), np.ones_like(x)], axis=-1)


@dataclass(frozen=True)
class Fit:
    """One least-squares fit of a scaling law.

    ``form`` is ``"gao_bon"``, ``"gao_rl"`` or ``"cui_entropy"``; ``coef`` holds ``alpha``/``beta`` (Gao) or
    ``a``/``b`` (Cui); ``n`` is the number of finite points fitted. ``r2`` is the coefficient of determination
    ``1 - SS_res / SS_tot`` with ``SS_tot`` taken about the mean of ``y``. The Gao forms have no intercept, so
    their ``r2`` can be negative (a fit worse than the constant mean); it is nan when ``y`` is constant.
    """

    form: str
    coef: dict[str, float]
    r2: float
    n: int

    def predict(self, x: ArrayLike) -> np.ndarray:
        """The fitted curve at ``x`` (``d`` for the Gao forms, entropy ``H`` for Cui's)."""
        xs = np.asarray(x, dtype=float)
        names = _COEF_NAMES[self.form]
        weights = np.array([self.coef[name] for name in names])
        return _design(self.form, xs) @ weights

    def peak(self) -> tuple[float, float] | None:
        """``(d*, R*)`` where the Gao curve peaks, or None where it has no peak at ``d > 0``.

        Best-of-n: ``d* = alpha / (2 beta)``, ``R* = alpha^2 / (4 beta)``; None unless ``beta > 0`` and
        ``alpha > 0`` (with ``alpha <= 0`` the curve only falls from ``d = 0``). RL: setting the derivative
        ``alpha - beta log d - beta`` to zero gives ``d* = exp(alpha / beta - 1)`` and ``R* = beta d*``; None
        unless ``beta > 0``. Cui's entropy law is monotone: always None.
        """
        if self.form == "cui_entropy":
            return None
        alpha, beta = self.coef["alpha"], self.coef["beta"]
        if not beta > 0:
            return None
        if self.form == "gao_bon":
            if not alpha > 0:
                return None
            d_star = alpha / (2.0 * beta)
            return d_star, alpha * alpha / (4.0 * beta)
        with np.errstate(over="ignore"):
            d_star = float(np.exp(alpha / beta - 1.0))
        return d_star, beta * d_star


def fit(form: str, x: ArrayLike, y: ArrayLike) -> Fit:
    """Fit ``form`` (one of :data:`FORMS`) to points ``(x, y)`` by ordinary least squares.

    ``x`` is ``d = sqrt(KL)`` for the Gao forms (must be ``>= 0``) and entropy ``H`` for ``"cui_entropy"``;
    ``y`` is the gain over the start (Gao) or the true accuracy (Cui). Both are flattened and must have the
    same number of elements; pairs where either is non-finite are dropped. At least 3 finite points and two
    distinct regressor columns (e.g. two distinct nonzero ``d``) are needed.
    """
    _check_form(form)
    xs = np.asarray(x, dtype=float).ravel()
    ys = np.asarray(y, dtype=float).ravel()
    if xs.size != ys.size:
        raise invalid("y", f"{ys.size} values", f"as many values as x ({xs.size})")
    keep = np.isfinite(xs) & np.isfinite(ys)
    xs, ys = xs[keep], ys[keep]
    if xs.size < 3:
        raise invalid("x", f"{xs.size} finite (x, y) points", "at least 3 finite (x, y) points")
    if form != "cui_entropy" and np.any(xs < 0):
        raise invalid("x", float(xs.min()), "d = sqrt(KL) >= 0 for the Gao forms")
    design = _design(form, xs)
    if not np.all(np.isfinite(design)):
        raise invalid("x", float(xs.max()), "entropies small enough that exp(H) is finite")
    weights, _, rank, _ = np.linalg.lstsq(design, ys, rcond=None)
    if rank < design.shape[1]:
        raise invalid("x", "degenerate points", f"points that identify both coefficients of {form} "
                      "(e.g. at least two distinct nonzero x)")
    residual = ys - design @ weights
    ss_res = float(residual @ residual)
    centred = ys - ys.mean()
    ss_tot = float(centred @ centred)
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else math.nan
    coef = {name: float(w) for name, w in zip(_COEF_NAMES[form], weights)}
    return Fit(form=form, coef=coef, r2=r2, n=int(xs.size))


def _t975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom (scipy when installed, else a table
    for df <= 30 and the Cornish-Fisher expansion about the normal quantile beyond, good to ~1e-5)."""
    try:
        from scipy.stats import t as student_t
    except ImportError:
        return _t975_fallback(df)
    return float(student_t.ppf(0.975, df))


def _t975_fallback(df: int) -> float:
    if df < 1:
        return math.nan
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959963984540054
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4


def _mean_interval(values: np.ndarray) -> tuple[float, float, float]:
    """Mean of ``values`` with its two-sided 95% Student-t interval (nan bounds for fewer than 2 values)."""
    k = values.size
    mean = float(values.mean())
    if k < 2:
        return mean, math.nan, math.nan
    half = _t975(k - 1) * float(values.std(ddof=1)) / math.sqrt(k)
    return mean, mean - half, mean + half


@dataclass(frozen=True)
class SeedFits:
    """Fits of one form per seed and pooled over seeds (see :func:`fit_seeds`)."""

    pooled: Fit
    per_seed: list[Fit] = field(default_factory=list)

    def interval(self, name: str) -> tuple[float, float, float]:
        """``(mean, lo, hi)``: the mean over seeds of coefficient ``name`` and its two-sided 95% Student-t
        interval (``mean -/+ t_{0.975, k-1} sd / sqrt(k)`` over ``k`` seeds; nan bounds with one seed)."""
        names = _COEF_NAMES[self.pooled.form]
        if name not in names:
            raise invalid("name", name, f"a coefficient of {self.pooled.form}: {', '.join(names)}")
        return _mean_interval(np.array([f.coef[name] for f in self.per_seed]))

    def r2_interval(self) -> tuple[float, float, float]:
        """``(mean, lo, hi)`` of the per-seed ``r2``, as :meth:`interval`."""
        return _mean_interval(np.array([f.r2 for f in self.per_seed]))


def fit_seeds(form: str, x: ArrayLike, y: ArrayLike) -> SeedFits:
    """Fit ``form`` to each seed of ``[seed, point]`` arrays ``x`` and ``y`` separately and to all pooled.

    ``x`` and ``y`` must broadcast to one 2-D ``[seed, point]`` shape (a 1-D ``x`` is shared by every seed).
    A seed that cannot be fitted raises with the field naming the seed, e.g. ``x[2]``.
    """
    _check_form(form)
    xs = np.asarray(x, dtype=float)
    ys = np.asarray(y, dtype=float)
    try:
        xb, yb = np.broadcast_arrays(xs, ys)
    except ValueError:
        raise invalid("y", f"shape {ys.shape}", f"a shape that broadcasts with x's {xs.shape}") from None
    if yb.ndim != 2:
        raise invalid("y", f"shape {ys.shape}", "a 2-D [seed, point] array (with x broadcasting to it)")
    per_seed = []
    for seed in range(yb.shape[0]):
        try:
            per_seed.append(fit(form, xb[seed], yb[seed]))
        except ValueError as error:
            raise invalid(f"x[{seed}]", "seed's points", str(error)) from None
    return SeedFits(pooled=fit(form, xb, yb), per_seed=per_seed)


@overload
def bon_kl(n: float) -> float: ...
@overload
def bon_kl(n: np.ndarray) -> np.ndarray: ...
def bon_kl(n: float | np.ndarray) -> float | np.ndarray:
    """KL(best-of-n || base) in nats, ``log n - (n - 1) / n`` (Gao et al. 2022; exact for continuous scores,
    an upper bound otherwise). ``n >= 1``; 0 at ``n = 1``."""
    ns = np.asarray(n, dtype=float)
    if np.any(~(ns >= 1)):
        raise invalid("n", n if ns.ndim == 0 else "array", "n >= 1")
    kl = np.log(ns) - (ns - 1.0) / ns
    return float(kl) if ns.ndim == 0 else kl


def curve_points(kl_curve: ArrayLike, true_curve: ArrayLike, base_value: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Gao's points from a run's curves: ``d = sqrt(max(kl, 0))`` and ``gain = true - base_value``.

    ``kl_curve`` (nats per sequence, per window) and ``true_curve`` (true accuracy per window) are
    ``[..., steps]`` arrays of the same shape. ``base_value`` is the start's true accuracy: a scalar, an array
    of shape ``[...]`` (one per run, expanded along ``steps``), or any array broadcasting to ``true_curve``.
    Non-finite values pass through (``fit`` drops them).
    """
    kl = np.asarray(kl_curve, dtype=float)
    true = np.asarray(true_curve, dtype=float)
    if kl.shape != true.shape:
        raise invalid("true_curve", f"shape {true.shape}", f"the shape of kl_curve {kl.shape}")
    base = np.asarray(base_value, dtype=float)
    if true.ndim >= 1 and base.shape == true.shape[:-1]:
        base = base[..., None]
    try:
        gain = true - base
    except ValueError:
        raise invalid("base_value", f"shape {base.shape}", f"a scalar, shape {true.shape[:-1]}, or a shape "
                      f"broadcasting to {true.shape}") from None
    if gain.shape != true.shape:
        raise invalid("base_value", f"shape {base.shape}", f"a shape that broadcasts to {true.shape}")
    with np.errstate(invalid="ignore"):
        d = np.sqrt(np.maximum(kl, 0.0))
    return d, gain
