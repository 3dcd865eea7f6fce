"""Analytic games with closed-form truth, for checking the lab against itself and for leaderboards.

* **Ishigami** and **Sobol-G**, the standard sensitivity-analysis test functions, continuous (the function and
  its closed-form Sobol indices) and as discrete grids: each input is cut into ``levels`` equal bins and
  evaluated at the bin midpoints. On a grid the uniform product design is the discrete uniform one, and the
  closed forms still hold with the 1-D moments of the grid in place of the continuous ones, so grid truth
  is exact (and tends to the continuous truth as the grid refines).
* **Sum of unanimity games**: two-level factors ("off", "on"); the outcome is sum_T c_T [all of T on], so
  the switching game from all-off to all-on has Moebius coefficients c_T exactly.
* **Planted interface surfaces**: factors named like fi_sim's (base, verifier, data, optimizer, scaffold),
  some with three levels, and a chosen interaction structure, e.g. a gain that appears only where base
  headroom, a faithful verifier and edge-of-competence data meet.
* **Random** games, for property tests.

Every game is an ``xarray.DataArray`` (factors as dimensions); ``n_seeds`` adds a ``seed`` dimension with
Gaussian seed noise of standard deviation ``noise_sd`` around the noiseless surface. Games that define a
natural gain carry ``attrs['baseline']`` and ``attrs['target']`` (dicts factor -> level).
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import xarray as xr

from fi_sim.errors import invalid

from ._surface import term_name

# ----------------------------------------------------------------------------------------------------------
# seeds


def with_seeds(y: xr.DataArray, n_seeds: int | None, noise_sd: float = 0.0, rng_seed: int = 0) -> xr.DataArray:
    """Replicate a noiseless surface over ``n_seeds`` seeds, adding independent N(0, noise_sd^2) noise per run."""
    if n_seeds is None:
        return y
    if not isinstance(n_seeds, (int, np.integer)) or isinstance(n_seeds, bool) or n_seeds < 1:
        raise invalid("n_seeds", n_seeds, "None (no seed dimension) or an integer >= 1")
    if not isinstance(noise_sd, (int, float)) or not np.isfinite(noise_sd) or noise_sd < 0:
        raise invalid("noise_sd", noise_sd, "a finite number >= 0 (standard deviation of seed noise)")
    rng = np.random.default_rng(rng_seed)
    noise = rng.normal(0.0, 1.0, size=y.shape + (int(n_seeds),)) * float(noise_sd)
    out = xr.DataArray(
        y.values[..., None] + noise,
        dims=list(y.dims) + ["seed"],
        coords={**{d: y.coords[d].values for d in y.dims}, "seed": np.arange(int(n_seeds))},
        name=y.name,
        attrs=dict(y.attrs, noise_sd=float(noise_sd), noise_rng_seed=int(rng_seed)),
    )
    return out


def _grid_surface(values: np.ndarray, names: Sequence[str], grids: Sequence[np.ndarray], name: str, attrs: dict) -> xr.DataArray:
    coords = {n: np.round(g, 12) for n, g in zip(names, grids)}
    return xr.DataArray(values, dims=list(names), coords=coords, name=name, attrs=attrs)


def midpoints(low: float, high: float, levels: int) -> np.ndarray:
    """Midpoints of ``levels`` equal bins of [low, high]: the grid on which the discrete games are evaluated."""
    if not isinstance(levels, (int, np.integer)) or isinstance(levels, bool) or levels < 2:
        raise invalid("levels", levels, "an integer >= 2 (grid points per input)")
    return low + (np.arange(levels) + 0.5) * (high - low) / levels


# ----------------------------------------------------------------------------------------------------------
# Ishigami: Y = sin x1 + a sin^2 x2 + b x3^4 sin x1, x_i ~ U(-pi, pi)


def ishigami_function(x: np.ndarray, a: float = 7.0, b: float = 0.1) -> np.ndarray:
    """The Ishigami function of inputs x[..., 0:3] in [-pi, pi]."""
    x = np.asarray(x, dtype=np.float64)
    return np.sin(x[..., 0]) + a * np.sin(x[..., 1]) ** 2 + b * x[..., 2] ** 4 * np.sin(x[..., 0])


def _ishigami_moments(levels: int | None):
    """Means and variances of sin x1, sin^2 x2 and x3^4 under the continuous or the grid design."""
    if levels is None:
        return dict(mean_sin=0.0, var_sin=0.5, var_sin2=1.0 / 8.0, mean_x4=np.pi**4 / 5.0, var_x4=16.0 * np.pi**8 / 225.0)
    grid = midpoints(-np.pi, np.pi, levels)
    return dict(
        mean_sin=np.sin(grid).mean(),
        var_sin=np.sin(grid).var(),
        var_sin2=(np.sin(grid) ** 2).var(),
        mean_x4=(grid**4).mean(),
        var_x4=(grid**4).var(),
    )


def ishigami_truth(a: float = 7.0, b: float = 0.1, levels: int | None = None) -> dict[str, Any]:
    """Closed-form fANOVA variances, Sobol indices and Shapley effects of Ishigami.

    Writing Y = sin x1 (1 + b x3^4) + a sin^2 x2, the only non-zero terms are
    V1 = Var(sin x1) (1 + b E x3^4)^2, V2 = a^2 Var(sin^2 x2), V3 = b^2 (E sin x1)^2 Var(x3^4) and
    V13 = b^2 Var(sin x1) Var(x3^4). ``levels=None`` gives the continuous truth (V3 = 0,
    V1 = (1 + b pi^4 / 5)^2 / 2, V2 = a^2 / 8, V13 = 8 b^2 pi^8 / 225), an integer the truth on the
    midpoint grid of :func:`get_game` ``("ishigami", levels=...)``.
    """
    m = _ishigami_moments(levels)
    terms = {
        ("x1",): m["var_sin"] * (1 + b * m["mean_x4"]) ** 2,
        ("x2",): a**2 * m["var_sin2"],
        ("x3",): b**2 * m["mean_sin"] ** 2 * m["var_x4"],
        ("x1", "x2"): 0.0,
        ("x1", "x3"): b**2 * m["var_sin"] * m["var_x4"],
        ("x2", "x3"): 0.0,
        ("x1", "x2", "x3"): 0.0,
    }
    return _truth_from_terms(terms, ("x1", "x2", "x3"))


def ishigami(levels: int = 8, a: float = 7.0, b: float = 0.1) -> xr.DataArray:
    """Ishigami on the midpoint grid with ``levels`` points per input; factors x1, x2, x3."""
    grid = midpoints(-np.pi, np.pi, levels)
    x = np.stack(np.meshgrid(grid, grid, grid, indexing="ij"), axis=-1)
    return _grid_surface(
        ishigami_function(x, a, b),
        ("x1", "x2", "x3"),
        [grid] * 3,
        "ishigami",
        {"description": f"Ishigami (a={a}, b={b}) on a {levels}-point midpoint grid of [-pi, pi]^3", "a": a, "b": b},
    )


# ----------------------------------------------------------------------------------------------------------
# Sobol-G: Y = prod_i (|4 x_i - 2| + a_i) / (1 + a_i), x_i ~ U(0, 1)

DEFAULT_SOBOL_G_A = (0.0, 1.0, 4.5, 9.0)


def sobol_g_function(x: np.ndarray, a: Sequence[float] | np.ndarray = DEFAULT_SOBOL_G_A) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    a = np.asarray(a, dtype=np.float64)
    return np.prod((np.abs(4.0 * x - 2.0) + a) / (1.0 + a), axis=-1)


def sobol_g_truth(a: Sequence[float] | np.ndarray = DEFAULT_SOBOL_G_A, levels: int | None = None) -> dict[str, Any]:
    """Closed-form truth of Sobol-G: V_S = prod_{i in S} sigma_i^2 prod_{j not in S} mu_j^2.

    mu_i and sigma_i^2 are the mean and variance of g_i = (|4x - 2| + a_i) / (1 + a_i): continuous
    (mu = 1, sigma^2 = 1 / (3 (1 + a_i)^2)), or over the midpoint grid with ``levels`` points.
    """
    a = np.asarray(a, dtype=np.float64)
    names = tuple(f"x{i + 1}" for i in range(len(a)))
    if levels is None:
        mu = np.ones_like(a)
        var = 1.0 / (3.0 * (1.0 + a) ** 2)
    else:
        g = (np.abs(4.0 * midpoints(0.0, 1.0, levels)[:, None] - 2.0) + a) / (1.0 + a)
        mu, var = g.mean(axis=0), g.var(axis=0)
    terms = {}
    for size in range(1, len(a) + 1):
        for combo in itertools.combinations(range(len(a)), size):
            inside = np.isin(np.arange(len(a)), combo)
            terms[tuple(names[i] for i in combo)] = float(np.prod(np.where(inside, var, mu**2)))
    return _truth_from_terms(terms, names)


def sobol_g(levels: int = 4, a: Sequence[float] = DEFAULT_SOBOL_G_A) -> xr.DataArray:
    """Sobol-G on the midpoint grid of [0, 1]^d with ``levels`` points per input; factors x1 .. xd."""
    a = tuple(float(v) for v in a)
    if len(a) < 1 or any(v < 0 for v in a):
        raise invalid("a", a, "one non-negative importance parameter per input")
    grid = midpoints(0.0, 1.0, levels)
    x = np.stack(np.meshgrid(*([grid] * len(a)), indexing="ij"), axis=-1)
    return _grid_surface(
        sobol_g_function(x, a),
        tuple(f"x{i + 1}" for i in range(len(a))),
        [grid] * len(a),
        "sobol_g",
        {"description": f"Sobol-G (a={list(a)}) on a {levels}-point midpoint grid of [0, 1]^{len(a)}", "a": list(a)},
    )


def _truth_from_terms(terms: Mapping[tuple, float], names: Sequence[str]) -> dict[str, Any]:
    total = float(sum(terms.values()))
    first = {n: terms.get((n,), 0.0) / total for n in names}
    total_index = {n: sum(v for k, v in terms.items() if n in k) / total for n in names}
    shapley = {n: sum(v / len(k) for k, v in terms.items() if n in k) for n in names}
    return {
        "variance_terms": dict(terms),
        "total_variance": total,
        "first": first,
        "total": total_index,
        "shapley_effects": shapley,
    }


# ----------------------------------------------------------------------------------------------------------
# sum of unanimity games

DEFAULT_UNANIMITY = {
    ("p1",): 1.0,
    ("p2",): 0.5,
    ("p3",): -0.3,
    ("p5",): 0.2,
    ("p1", "p2"): 1.5,
    ("p2", "p3", "p4"): 2.0,
    ("p1", "p4", "p5"): -1.0,
}


def _normalise_coalitions(coefficients: Mapping, field: str) -> tuple[dict[frozenset, float], tuple[str, ...]]:
    if not isinstance(coefficients, Mapping) or not coefficients:
        raise invalid(field, coefficients, "a non-empty dict {coalition (tuple of player names): coefficient}")
    out: dict[frozenset, float] = {}
    players: list[str] = []
    for key, value in coefficients.items():
        members = (key,) if isinstance(key, str) else tuple(key)
        for p in members:
            if not isinstance(p, str):
                raise invalid(f"{field} key", key, "a player name or a tuple of player names")
            if p not in players:
                players.append(p)
        out[frozenset(members)] = out.get(frozenset(members), 0.0) + float(value)
    return out, tuple(sorted(players, key=lambda p: (len(p), p)))


def unanimity_truth(coefficients: Mapping = DEFAULT_UNANIMITY, players: Sequence[str] | None = None) -> dict[str, Any]:
    """Closed forms of a sum of unanimity games v(S) = sum_T c_T [T subset S] on two-level factors.

    Switching game (all "off" -> all "on"): Moebius m(T) = c_T; Shapley_i = sum_{T containing i} c_T / |T|;
    Banzhaf_i = sum_{T containing i} c_T / 2^(|T|-1); SII(S) = sum_{T superset S} c_T / (|T| - |S| + 1).
    fANOVA under the uniform design: with z = (1 + s) / 2, s = +-1, each unanimity term expands into
    characters, so V_U = (sum_{T superset U} c_T / 2^|T|)^2 for every non-empty U.
    """
    coefs, found = _normalise_coalitions(coefficients, "coefficients")
    players = tuple(players) if players is not None else found
    n = len(players)
    shapley = {p: sum(c / len(T) for T, c in coefs.items() if p in T) for p in players}
    banzhaf = {p: sum(c / 2 ** (len(T) - 1) for T, c in coefs.items() if p in T) for p in players}
    moebius = {frozenset(S): 0.0 for size in range(n + 1) for S in itertools.combinations(players, size)}
    for T, c in coefs.items():
        moebius[T] += c
    sii2 = {
        frozenset(pair): sum(c / (len(T) - 1) for T, c in coefs.items() if set(pair) <= T)
        for pair in itertools.combinations(players, 2)
    }
    terms = {}
    for size in range(1, n + 1):
        for U in itertools.combinations(players, size):
            amplitude = sum(c / 2 ** len(T) for T, c in coefs.items() if set(U) <= T)
            terms[U] = amplitude**2
    out = _truth_from_terms(terms, players)
    out.update(moebius=moebius, shapley=shapley, banzhaf=banzhaf, interactions=sii2, gain=sum(coefs.values()) - coefs.get(frozenset(), 0.0))
    return out


def unanimity(coefficients: Mapping = DEFAULT_UNANIMITY, players: Sequence[str] | None = None) -> xr.DataArray:
    """Sum of unanimity games on two-level factors ("off", "on"): Y(x) = sum_T c_T prod_{i in T} [x_i = on]."""
    coefs, found = _normalise_coalitions(coefficients, "coefficients")
    players = tuple(players) if players is not None else found
    missing = sorted(set().union(*coefs) - set(players))
    if missing:
        raise invalid("players", list(players), f"every player named in the coefficients, including {missing}")
    on = np.stack(np.meshgrid(*([np.array([0.0, 1.0])] * len(players)), indexing="ij"), axis=-1)
    values = np.zeros(on.shape[:-1])
    for T, c in coefs.items():
        values = values + c * np.prod(on[..., [players.index(p) for p in T]], axis=-1) if T else values + c
    return xr.DataArray(
        values,
        dims=list(players),
        coords={p: ["off", "on"] for p in players},
        name="unanimity",
        attrs={
            "description": "sum of unanimity games: " + ", ".join(f"{c:+g}*[{term_name(sorted(T, key=players.index))}]" for T, c in coefs.items()),
            "baseline": {p: "off" for p in players},
            "target": {p: "on" for p in players},
            "planted_moebius": {term_name(sorted(T, key=players.index)): c for T, c in coefs.items()},
        },
    )


# ----------------------------------------------------------------------------------------------------------
# planted interface surfaces

# Levels go from the baseline (first) to the target (last); ``closeness`` places every level between them:
# 0 at the baseline level, 1 at the target level. The surface is c_0 + sum_T c_T prod_{i in T} closeness_i,
# so on the baseline/target sub-grid its switching game has Moebius coefficients c_T exactly, while the
# intermediate levels give the global (variance) truth something to spread over.
INTERFACE_FACTORS: dict[str, dict[str, float]] = {
    "base": {"no_headroom": 0.0, "headroom": 1.0},
    "verifier": {"format_only": 0.0, "noisy": 0.5, "faithful": 1.0},
    "data": {"easy": 0.0, "beyond": 0.2, "edge": 1.0},
    "optimizer": {"sft": 0.0, "grpo": 1.0},
    "scaffold": {"direct": 0.0, "scratchpad": 1.0},
}

INTERFACE_STRUCTURES: dict[str, dict[tuple[str, ...], float]] = {
    # A gain that appears only where base headroom, a faithful verifier and edge-of-competence data meet,
    # beside small main effects and an optimizer x scaffold synergy.
    "three_way": {
        ("base",): 0.02,
        ("verifier",): 0.01,
        ("data",): 0.03,
        ("optimizer",): 0.04,
        ("optimizer", "scaffold"): 0.02,
        ("base", "verifier", "data"): 0.25,
    },
    # The data only helps under a faithful verifier (a reward channel that can be trusted).
    "pairwise": {
        ("base",): 0.05,
        ("verifier",): 0.02,
        ("data",): 0.04,
        ("optimizer",): 0.04,
        ("scaffold",): 0.03,
        ("verifier", "data"): 0.15,
    },
    # No interactions: every method that adds up one-factor effects is right.
    "additive": {("base",): 0.06, ("verifier",): 0.04, ("data",): 0.10, ("optimizer",): 0.05, ("scaffold",): 0.02},
}

INTERFACE_BASELINE_ACCURACY = 0.30


def interface_surface(structure: str = "three_way", coefficients: Mapping | None = None) -> xr.DataArray:
    """A planted accuracy surface over five interface factors with a chosen interaction structure.

    ``structure`` picks one of :data:`INTERFACE_STRUCTURES`; ``coefficients`` ({tuple of factors: c_T})
    plants your own. The switching game from the baseline (first levels) to the target (last levels) has
    Moebius coefficients c_T (stored in ``attrs['planted_moebius']``).
    """
    if coefficients is None:
        if structure not in INTERFACE_STRUCTURES:
            raise invalid("structure", structure, f"one of {sorted(INTERFACE_STRUCTURES)}")
        coefficients = INTERFACE_STRUCTURES[structure]
    coefs, _ = _normalise_coalitions(coefficients, "coefficients")
    names = tuple(INTERFACE_FACTORS)
    unknown = sorted(set().union(*coefs) - set(names))
    if unknown:
        raise invalid("coefficients", unknown, f"coalitions of the interface factors {list(names)}")
    grids = [np.array(list(INTERFACE_FACTORS[n].values())) for n in names]
    closeness = np.stack(np.meshgrid(*grids, indexing="ij"), axis=-1)
    values = np.full(closeness.shape[:-1], INTERFACE_BASELINE_ACCURACY)
    for T, c in coefs.items():
        values = values + c * np.prod(closeness[..., [names.index(p) for p in T]], axis=-1)
    return xr.DataArray(
        values,
        dims=list(names),
        coords={n: list(INTERFACE_FACTORS[n]) for n in names},
        name="accuracy",
        attrs={
            "description": f"planted interface surface ({structure}): accuracy {INTERFACE_BASELINE_ACCURACY} at the baseline plus "
            + ", ".join(f"{c:+g} x [{term_name(sorted(T, key=names.index))}]" for T, c in coefs.items()),
            "baseline": {n: list(INTERFACE_FACTORS[n])[0] for n in names},
            "target": {n: list(INTERFACE_FACTORS[n])[-1] for n in names},
            "planted_moebius": {term_name(sorted(T, key=names.index)): c for T, c in coefs.items()},
        },
    )


# ----------------------------------------------------------------------------------------------------------
# random games


def random_game(n_factors: int = 4, levels: int | Sequence[int] = 3, rng_seed: int = 0, names: Sequence[str] | None = None) -> xr.DataArray:
    """A surface of independent standard normal outcomes: every interaction of every order is present."""
    if not isinstance(n_factors, (int, np.integer)) or not 1 <= n_factors <= 12:
        raise invalid("n_factors", n_factors, "an integer between 1 and 12")
    sizes = [levels] * n_factors if isinstance(levels, (int, np.integer)) else list(levels)
    if len(sizes) != n_factors or any(not isinstance(s, (int, np.integer)) or s < 2 for s in sizes):
        raise invalid("levels", levels, f"an integer >= 2 or {n_factors} of them")
    names = tuple(names) if names is not None else tuple(f"f{i + 1}" for i in range(n_factors))
    rng = np.random.default_rng(rng_seed)
    return xr.DataArray(
        rng.normal(size=tuple(sizes)),
        dims=list(names),
        coords={n: [f"L{j}" for j in range(s)] for n, s in zip(names, sizes)},
        name="random",
        attrs={"description": f"random normal surface, levels {sizes}, rng_seed {rng_seed}"},
    )


# ----------------------------------------------------------------------------------------------------------
# registry

GAMES: dict[str, str] = {
    "interface_three_way": "planted interface surface: a +0.25 gain only where base headroom, a faithful verifier and edge data meet (5 factors, 72 cells)",
    "interface_pairwise": "planted interface surface: the data helps only under a faithful verifier (5 factors, 72 cells)",
    "interface_additive": "planted interface surface without interactions (5 factors, 72 cells)",
    "unanimity": "sum of unanimity games on 5 two-level players, with known Moebius coefficients",
    "ishigami": "Ishigami function (a=7, b=0.1) on a midpoint grid, default 8 levels per input (3 factors)",
    "sobol_g": "Sobol-G function (a = 0, 1, 4.5, 9) on a midpoint grid, default 4 levels per input (4 factors)",
    "random": "independent normal outcomes on a grid (options n_factors, levels, rng_seed)",
}

_BUILDERS: dict[str, Callable[..., xr.DataArray]] = {
    "interface_three_way": lambda **kw: interface_surface("three_way", **kw),
    "interface_pairwise": lambda **kw: interface_surface("pairwise", **kw),
    "interface_additive": lambda **kw: interface_surface("additive", **kw),
    "unanimity": unanimity,
    "ishigami": ishigami,
    "sobol_g": sobol_g,
    "random": random_game,
}


def get_game(name: str, *, n_seeds: int | None = None, noise_sd: float = 0.0, rng_seed: int = 0, **kwargs) -> xr.DataArray:
    """An analytic game by name (see :data:`GAMES`), optionally replicated over seeds with Gaussian noise.

    ``kwargs`` go to the game's builder (e.g. ``levels=6`` for ishigami, ``coefficients=...`` for unanimity).
    """
    if name not in _BUILDERS:
        raise invalid("game", name, f"one of {sorted(GAMES)}")
    try:
        y = _BUILDERS[name](**kwargs)
    except TypeError as error:  # an option the builder does not take
        raise invalid(f"options of game {name!r}", sorted(kwargs), f"the builder's parameters ({error})") from None
    y.attrs["game"] = name
    return with_seeds(y, n_seeds, noise_sd, rng_seed)


def planted_truth(y: xr.DataArray) -> dict[frozenset, float]:
    """The planted Moebius coefficients of a unanimity or interface game, keyed by frozenset of factors."""
    planted = y.attrs.get("planted_moebius")
    if not isinstance(planted, Mapping):
        raise invalid("y.attrs['planted_moebius']", planted, "a game built by unanimity() or interface_surface()")
    return {frozenset(k.split(":")): float(v) for k, v in planted.items()}

