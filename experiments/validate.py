"""The validation suite: the field's findings, reproduced where the truth is known.

Each finding is one or more study files in `experiments/findings/` and a check that prints its signature
with 95% confidence intervals over seeds, ending in one line `PASS <name> ...` or `FAIL <name> ...`.

    python experiments/validate.py                  # every finding at small size (a few minutes per finding)
    python experiments/validate.py --full           # at full size (the study files as written)
    python experiments/validate.py sharpening ...   # only the named findings
    make validate  /  make validate FULL=1

Small size runs the same study with fewer seeds and a smaller evaluation set (see `SMALL`); its intervals are
wider, so a small-size FAIL is weaker evidence than a full-size one. Results go to
`runs/validation/{small,full}/<finding>/<study>/`, and a rerun resumes them. No check is tuned by choosing
seeds: seeds are 0..n-1 as the study files say.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FINDINGS_DIR = ROOT / "experiments" / "findings"
SMALL = {"seeds": 3, "eval_size": 96}


# ------------------------------------------------------------------------------------------------ statistics
def t975(df: int) -> float:
    from fi_sim.attribution.methods import t_quantile_975

    return t_quantile_975(df)


@dataclass
class Interval:
    mean: float
    lo: float
    hi: float

    def __str__(self) -> str:
        return f"{self.mean:+.3f} [{self.lo:+.3f}, {self.hi:+.3f}]"


def seed_ci(values) -> Interval:
    """Mean over seeds with a 95% t-interval (seeds are the replicates)."""
    x = np.asarray(values, float).ravel()
    x = x[np.isfinite(x)]
    m = float(x.mean())
    if len(x) < 2:
        return Interval(m, np.nan, np.nan)
    half = t975(len(x) - 1) * float(x.std(ddof=1)) / np.sqrt(len(x))
    return Interval(m, m - half, m + half)


def per_seed(da, **sel):
    """A metric's values over seeds at one cell (every other dimension selected)."""
    out = da.sel(**sel) if sel else da
    extra = [d for d in out.dims if d != "seed"]
    if extra:
        out = out.squeeze(drop=True)
        extra = [d for d in out.dims if d != "seed"]
        if extra:
            raise ValueError(f"cell not fully selected: {extra} remain")
    return out.values


# ------------------------------------------------------------------------------------------------ findings
@dataclass
class Verdict:
    passed: bool
    summary: str
    details: list[str] = field(default_factory=list)
    # what the verdict is a function of, for the power computation (experiments/power.py): per-seed contrasts
    # (all paired by seed) and the criterion on their 95% intervals that decided `passed`
    contrasts: dict[str, np.ndarray] = field(default_factory=dict)
    criterion: Callable[[dict[str, Interval]], bool] | None = None


def judge(contrasts: dict, criterion: Callable[[dict[str, Interval]], bool]) -> tuple[bool, dict[str, Interval]]:
    """A check's verdict: the criterion on the intervals of its per-seed contrasts (and the intervals)."""
    contrasts = {k: np.asarray(v, float).ravel() for k, v in contrasts.items()}
    intervals = {k: seed_ci(v) for k, v in contrasts.items()}
    return bool(criterion(intervals)), intervals


@dataclass
class Finding:
    name: str
    title: str
    studies: tuple[str, ...]
    check: Callable[[dict], Verdict]
    mechanism: str = ""  # what in the simulator produces (or blocks) the effect (docs/validation.md has the analysis)
    designs: int = 1  # study designs so far, each committed before it ran (the history is in docs/validation.md)


def check_sharpening(results) -> Verdict:
    ds = results["sharpening"]
    ks = [int(b.split("@")[1]) for b in ds["budget"].values]
    contrasts = {f"gain@{k}": per_seed(ds["gain"], budget=b) for k, b in zip(ks, ds["budget"].values)}
    base = {k: float(ds["base_score"].sel(budget=b).mean()) for k, b in zip(ks, ds["budget"].values)}
    kmax = max(ks)

    def criterion(iv):
        return iv["gain@1"].lo > 0 and iv[f"gain@{kmax}"].hi < 0 and any(iv[f"gain@{k}"].mean <= 0 for k in ks)

    passed, iv = judge(contrasts, criterion)
    gains = {k: iv[f"gain@{k}"] for k in ks}
    details = [f"  k={k:>2}: base pass@k {base[k]:.3f}, gain {gains[k]}" for k in ks]
    crossing = next((k for k in ks if gains[k].mean <= 0), None)
    summary = (f"gain pass@1 {gains[1]}, gain pass@{kmax} {gains[kmax]}, gain curve crosses zero at k={crossing}")
    return Verdict(passed, summary, details, contrasts, criterion)


def check_contamination(results) -> Verdict:
    ds = results["contamination"]
    details, lost = [], {}
    for ver in ds["verifier"].values:
        for data in ds["data"].values:
            sel = dict(verifier=ver, data=data)
            gain, clean = seed_ci(per_seed(ds["gain"], **sel)), seed_ci(per_seed(ds["clean_gain"], **sel))
            lost[ver, data] = seed_ci(per_seed(ds["gain"] - ds["clean_gain"], **sel))
            details.append(f"  {ver:>5} reward, {data:>17} data: gain {gain}, clean gain {clean}, "
                           f"gone on the clean items {lost[ver, data]}")
    weak = [v for v in ds["verifier"].values if v != "exact"][0]
    contrasts = {"lost": per_seed(ds["gain"] - ds["clean_gain"], verifier=weak, data="edge_contaminated")}

    def criterion(iv):
        return iv["lost"].lo > 0

    passed, iv = judge(contrasts, criterion)
    d = iv["lost"]
    share = d.mean / max(seed_ci(per_seed(ds["gain"], verifier=weak, data="edge_contaminated")).mean, 1e-9)
    summary = (f"under the {weak} reward with contaminated data, gain minus clean gain {d} "
               f"({share:.0%} of the measured gain)")
    return Verdict(passed, summary, details, contrasts, criterion)


def check_noisy_verifiers(results) -> Verdict:
    ds = results["noisy_verifiers"]
    details, noise, names = [], [], []
    for name in ds["verifier"].values:
        g = seed_ci(per_seed(ds["gain"], verifier=name))
        details.append(f"  {name:>9}: gain {g}; measured FP {float(ds['reward_false_positive_rate'].sel(verifier=name).mean()):.3f}"
                       f" FN {float(ds['reward_false_negative_rate'].sel(verifier=name).mean()):.3f}")
        if name != "hackable":
            noise.append(0.0 if name == "exact" else float(name.removeprefix("rho")))
            names.append(name)
    ordered = [names[i] for i in np.argsort(noise)]
    # hackable: proxy reward rises while true accuracy falls over training (late window minus early window)
    hk = ds.sel(verifier="hackable")
    third = max(1, hk.sizes["step"] // 3)
    contrasts = {f"gain {n}": per_seed(ds["gain"], verifier=n) for n in ordered}
    contrasts["hackable proxy change"] = per_seed(hk["curve_proxy_reward"].isel(step=slice(-third, None)).mean("step")
                                                  - hk["curve_proxy_reward"].isel(step=slice(0, third)).mean("step"))
    contrasts["hackable truth change"] = per_seed(hk["curve_true_accuracy"].isel(step=slice(-third, None)).mean("step")
                                                  - hk["curve_true_accuracy"].isel(step=slice(0, third)).mean("step"))

    def monotone(iv):
        # smooth degradation: each step up in noise lowers the mean gain (small rises within the seed noise allowed)
        m = [iv[f"gain {n}"] for n in ordered]
        return all(b.mean <= a.mean + 0.02 for a, b in zip(m, m[1:]))

    def criterion(iv):
        collapsed = iv[f"gain {ordered[-1]}"].hi < 0.25 * iv[f"gain {ordered[0]}"].mean  # gone at rho0 + rho1 = 1
        return monotone(iv) and collapsed and iv["hackable proxy change"].lo > 0 and iv["hackable truth change"].hi < 0

    passed, iv = judge(contrasts, criterion)
    m = [iv[f"gain {n}"] for n in ordered]
    d_proxy, d_true = iv["hackable proxy change"], iv["hackable truth change"]
    details.append(f"  hackable over training: proxy reward change {d_proxy}, true accuracy change {d_true}")
    summary = (f"gain exact {m[0]}, at rho0+rho1=1 {m[-1]}; monotone={monotone(iv)}; hackable: proxy {d_proxy}, "
               f"truth {d_true}")
    return Verdict(passed, summary, details, contrasts, criterion)


SMOOTH = 5  # logged curve points in the moving mean through which checks (and the paper's figure) read curves


def moving_mean(x, n: int = SMOOTH) -> np.ndarray:
    """The moving mean over the last axis of `x` (windows of `n` points, only where the window is full)."""
    x = np.asarray(x, float)
    return np.apply_along_axis(lambda row: np.convolve(row, np.ones(n) / n, mode="valid"), -1, x)


def rise_then_fall(truth, proxy, smooth: int = SMOOTH):
    """Gao et al.'s signature along one arm's training curves ([seed, step] arrays of window means): true accuracy
    rises from its start to a peak and falls from the peak to the end, while the proxy reward is higher at the end
    than at the truth's peak. Curves are smoothed over `smooth` logged points. The peak is placed by cross-fitting
    (for each seed, the argmax of the other seeds' mean curve, never the first or last point), so a seed's contrasts
    are not biased upward by picking the maximum of its own noise. Returns (rise, fall, proxy_after, peak_share)."""
    rise, fall, proxy_after, peaks = rise_then_fall_seeds(truth, proxy, smooth)
    return seed_ci(rise), seed_ci(fall), seed_ci(proxy_after), peak_share(peaks, truth, smooth)


def rise_then_fall_seeds(truth, proxy, smooth: int = SMOOTH):
    """`rise_then_fall`'s contrasts per seed (arrays), and each seed's cross-fitted peak (an index into the
    smoothed curves)."""
    t, p = moving_mean(truth, smooth), moving_mean(proxy, smooth)
    peaks = cross_fitted_peaks(truth, smooth)
    rise = np.array([t[s, k] - t[s, 0] for s, k in enumerate(peaks)])
    fall = np.array([t[s, k] - t[s, -1] for s, k in enumerate(peaks)])
    proxy_after = np.array([p[s, -1] - p[s, k] for s, k in enumerate(peaks)])
    return rise, fall, proxy_after, peaks


def peak_share(peaks, truth, smooth: int = SMOOTH) -> float:
    """The mean peak's place in training (0: the first smoothed point, 1: the last)."""
    return float(np.mean(peaks)) / (np.shape(truth)[-1] - smooth)


def check_over_optimisation_hackable(results) -> Verdict:
    """The second design's check (a hackable verifier): kept as the finding's second row."""
    ds = results["over_optimisation"]
    levels = list(ds["optimizer"].values)
    kl = {o: float(ds["kl_to_base"].sel(optimizer=o).mean()) for o in levels}
    order = sorted(levels, key=lambda o: kl[o])
    gains = {o: per_seed(ds["gain"], optimizer=o) for o in levels}
    details = [f"  {o:>7}: KL to base {kl[o]:.2f}, true gain {seed_ci(gains[o])}, proxy gain "
               f"{seed_ci(per_seed(ds['proxy_gain'], optimizer=o))}" for o in order]
    # along optimisation (Gao et al.'s figure 1): the unpenalised arm, the one that moves furthest from its base
    free = order[-1]
    cell = dict(optimizer=free)
    curve = lambda v: ds[v].sel(**cell).squeeze(drop=True).transpose("seed", "step").values  # noqa: E731
    truth, proxy = curve("curve_true_accuracy"), curve("curve_proxy_reward")
    rise, fall, proxy_after, where = rise_then_fall(truth, proxy)
    kl_curve, truth_curve, proxy_curve = curve("curve_kl").mean(0), truth.mean(0), proxy.mean(0)
    marks = np.linspace(0, len(kl_curve) - 1, 6).round().astype(int)
    details.append(f"  {free} over training (KL to base -> true accuracy / proxy reward of the training samples): "
                   + "; ".join(f"{kl_curve[i]:.2f} -> {truth_curve[i]:.2f} / {proxy_curve[i]:.2f}" for i in marks))
    details.append(f"  {free} along training: truth rises to its peak {rise}, falls from it to the end {fall}; the "
                   f"proxy after the truth's peak {proxy_after} (peak at {100 * where:.0f}% of training)")
    along = rise.lo > 0 and fall.lo > 0 and proxy_after.lo > 0
    # across KL penalties: the final true gain peaks at an intermediate KL
    peak = max(order, key=lambda o: gains[o].mean())
    interior = peak not in (order[0], order[-1])
    above_low = seed_ci(gains[peak] - gains[order[0]])  # paired by seed: the same base and evaluation draws
    above_high = seed_ci(gains[peak] - gains[order[-1]])
    across = interior and above_low.lo > 0 and above_high.lo > 0
    details.append(f"  across penalties: true gain peaks at KL {kl[peak]:.2f} ({peak}); peak minus lowest-KL "
                   f"{above_low}, peak minus highest-KL {above_high}: {'yes' if across else 'no'}")
    summary = (f"along training ({free}): truth up {rise} then down {fall} while the proxy rises {proxy_after}; "
               f"across penalties: peak at KL {kl[peak]:.2f}, above the highest-KL arm by {above_high}")
    return Verdict(along and across, summary, details)


def cross_fitted_peaks(truth, smooth: int = SMOOTH) -> list[int]:
    """For each seed, the argmax of the other seeds' mean smoothed truth curve (never the first or last point)."""
    t = moving_mean(truth, smooth)
    return [1 + int(np.argmax(np.delete(t, s, axis=0).mean(0)[1:-1])) for s in range(t.shape[0])]


def check_over_optimisation(results) -> Verdict:
    """Gao et al. (2022) with a learned proxy (over_optimisation_rm.toml): along training the truth rises then
    falls while the proxy keeps rising (smallest reward model), and the truth's peak moves to a larger
    d = sqrt(KL) as the reward model gets more labelled data. Gao's RL and best-of-n forms are fitted and
    reported. The hackable verifier's design is the second row (reported, not part of the verdict)."""
    ds = results["over_optimisation_rm"]
    sizes = sorted(ds["verifier"].values, key=lambda v: int(str(v)[2:]))  # rm128, rm512, rm2048
    arms = list(ds["optimizer"].values)
    free = max(arms, key=lambda o: float(ds["kl_to_base"].sel(optimizer=o).mean()))
    details, peak_d, contrasts = [], {}, {}
    for v in sizes:
        curve = lambda name, o=free, v=v: ds[name].sel(verifier=v, optimizer=o).squeeze(drop=True).transpose(  # noqa: E731
            "seed", "step").values
        truth, proxy, kl = curve("curve_true_accuracy"), curve("curve_proxy_reward"), curve("curve_kl")
        rise_s, fall_s, proxy_s, peaks = rise_then_fall_seeds(truth, proxy)
        rise, fall, proxy_after, where = seed_ci(rise_s), seed_ci(fall_s), seed_ci(proxy_s), peak_share(peaks, truth)
        d_kl = np.sqrt(np.maximum(moving_mean(kl), 0))
        peak_d[v] = np.array([d_kl[s, k] for s, k in enumerate(peaks)])
        fpr = np.nanmean(curve("curve_false_positive_rate"), 0)
        details.append(f"  {v} ({free}): truth up {rise} then down {fall}; proxy after the truth's peak {proxy_after}; "
                       f"peak at {100 * where:.0f}% of training, d = sqrt(KL) {seed_ci(peak_d[v])}; measured false-"
                       f"positive rate first / last window {fpr[0]:.2f} / {fpr[-1]:.2f}")
        if v == sizes[0]:
            contrasts.update({"rise": rise_s, "fall": fall_s, "proxy after the peak": proxy_s})
        contrasts[f"peak d {v}"] = peak_d[v]
        rl, bon = gao_fits(ds, v)
        details.append("    " + fit_line("RL", rl, ("alpha", "beta")) + "; " + fit_line("best-of-n", bon, ("alpha", "beta")))
    contrasts["peak d moved"] = peak_d[sizes[-1]] - peak_d[sizes[0]]  # paired by seed: the same base and draws

    def criterion(iv):
        means = [iv[f"peak d {v}"].mean for v in sizes]
        return (iv["rise"].lo > 0 and iv["fall"].lo > 0 and iv["proxy after the peak"].lo > 0
                and all(a < b for a, b in zip(means, means[1:])) and iv["peak d moved"].lo > 0)

    passed, iv = judge(contrasts, criterion)
    rise, fall, proxy_after, moved = iv["rise"], iv["fall"], iv["proxy after the peak"], iv["peak d moved"]
    means = [float(peak_d[v].mean()) for v in sizes]
    ordered = all(a < b for a, b in zip(means, means[1:]))
    details.append("  the truth's peak d by reward-model data: " + ", ".join(
        f"{v} {m:.2f}" for v, m in zip(sizes, means)) + f"; {sizes[-1]} minus {sizes[0]} {moved}")
    second = check_over_optimisation_hackable(results) if "over_optimisation" in results else None
    if second is not None:
        details.append(f"  second row, hackable verifier: {'PASS' if second.passed else 'FAIL'} {second.summary}")
    summary = (f"reward model ({sizes[0]}, {free}): truth up {rise}, down {fall}, proxy after {proxy_after}; peak d "
               f"{' < '.join(f'{m:.2f}' for m in means) if ordered else ', '.join(f'{m:.2f}' for m in means)} "
               f"({sizes[-1]} - {sizes[0]}: {moved})")
    return Verdict(passed, summary, details, contrasts, criterion)


def gao_fits(ds, verifier):
    """Gao et al.'s two forms for one reward model of over_optimisation_rm: the RL form over every KL arm's windows
    (gain over the first window against d = sqrt(KL)), and the best-of-n form on the base under the same model
    (best-of-k over pass@1 against d = sqrt(log k - (k-1)/k)). Returns (rl, bon) `fi_sim.laws.SeedFits`."""
    from fi_sim import laws

    xs, ys = [], []
    for o in ds["optimizer"].values:
        cell = ds.sel(verifier=verifier, optimizer=o)
        t = cell["curve_true_accuracy"].squeeze(drop=True).transpose("seed", "step").values
        k = cell["curve_kl"].squeeze(drop=True).transpose("seed", "step").values
        d, gain = laws.curve_points(k, t, t[:, 0])
        xs.append(d)
        ys.append(gain)
    rl = laws.fit_seeds("gao_rl", np.concatenate(xs, 1), np.concatenate(ys, 1))
    ks = [1] + [int(str(b).split("@")[1]) for b in ds["budget"].values if str(b).startswith("best@")]
    names = ["pass@1"] + [f"best@{k}" for k in ks[1:]]
    base = np.stack([per_seed(ds["base_score"].isel(optimizer=0), verifier=verifier, budget=b) for b in names], 1)
    bon = laws.fit_seeds("gao_bon", np.sqrt(laws.bon_kl(np.array(ks, float)))[None].repeat(len(base), 0),
                         base - base[:, :1])
    return rl, bon


def cui_fits(ds, optimizer):
    """Cui et al.'s R = -a exp(H) + b along training for one objective of entropy_dynamics: (fits, H, R)."""
    from fi_sim.report import entropy_law

    return entropy_law(ds.sel(optimizer=optimizer))


def fit_line(label: str, fits, names) -> str:
    """One fitted law as text: its coefficients with seed intervals and the pooled fit's R^2."""
    parts = []
    for n in names:
        m, lo, hi = fits.interval(n)
        parts.append(f"{n} {m:+.3f} [{lo:+.3f}, {hi:+.3f}]")
    return f"{label}: " + ", ".join(parts) + f", R^2 {fits.pooled.r2:.2f}"


def report_entropy_law(results) -> list[str]:
    """Cui et al. (2025): R = -a exp(H) + b along training, per objective (entropy_dynamics.toml). Reported, with
    seed intervals and R^2; no verdict."""
    ds = results["entropy_dynamics"]
    lines = []
    for o in ds["optimizer"].values:
        fits, h, r = cui_fits(ds, o)
        lines.append(f"  {str(o):>9}: entropy {h[:, 0].mean():.3f} -> {h[:, -1].mean():.3f} nats/token, accuracy "
                     f"{r[:, 0].mean():.3f} -> {r[:, -1].mean():.3f}; " + fit_line("R = -a exp(H) + b", fits, ("a", "b")))
    return lines


def check_edge_of_competence(results) -> Verdict:
    def gain(cond, base, budget):
        ds = results[f"edge_of_competence_{cond}"]
        return seed_ci(per_seed(ds["gain"], base=ds["base"].values[base], budget=budget))

    def base_score(cond, base, budget):
        ds = results[f"edge_of_competence_{cond}"]
        return float(ds["base_score"].sel(base=ds["base"].values[base], budget=budget).mean())

    details = []
    for cond in ("within", "edge", "beyond"):
        for b, label in ((0, "narrow"), (1, "broad")):
            details.append(f"  {cond:>6} / {label:>6}: base pass@1 {base_score(cond, b, 'pass@1'):.3f} pass@32 "
                           f"{base_score(cond, b, 'pass@32'):.3f}; gain pass@1 {gain(cond, b, 'pass@1')}, "
                           f"pass@32 {gain(cond, b, 'pass@32')}")
    def seeds(cond, base, budget):
        ds = results[f"edge_of_competence_{cond}"]
        return per_seed(ds["gain"], base=ds["base"].values[base], budget=budget)

    contrasts = {"edge32": seeds("edge", 0, "pass@32"), "edge control32": seeds("edge", 1, "pass@32"),
                 "within32": seeds("within", 0, "pass@32"), "within1": seeds("within", 0, "pass@1"),
                 "beyond32": seeds("beyond", 0, "pass@32"), "beyond1": seeds("beyond", 0, "pass@1")}

    def checks(iv):
        return {
            "edge adds capability (pass@32 up)": iv["edge32"].lo > 0,
            "only with headroom (broad base: none)": iv["edge control32"].hi < iv["edge32"].lo,
            "within: no capability (pass@32 not up)": iv["within32"].hi < 0.02,
            "within: pass@1 helped at least as much": iv["within1"].mean >= iv["within32"].mean - 0.01,
            "beyond: nothing (no pass@1 or pass@32 gain)": iv["beyond32"].hi < 0.02 and iv["beyond1"].hi < 0.05,
        }

    def criterion(iv):
        return all(checks(iv).values())

    passed, iv = judge(contrasts, criterion)
    edge, edge_control, within32, beyond32 = iv["edge32"], iv["edge control32"], iv["within32"], iv["beyond32"]
    details += [f"  [{'x' if ok else ' '}] {name}" for name, ok in checks(iv).items()]
    summary = (f"edge pass@32 {edge} (broad control {edge_control}); within pass@32 {within32}; beyond pass@32 "
               f"{beyond32}")
    return Verdict(passed, summary, details, contrasts, criterion)


def check_spurious_rewards(results) -> Verdict:
    """Third design (spurious_rewards_clip.toml): a random reward under the clipped objective (plain SGD) raises
    the base whose majority behaviour is right and not the one whose majority behaviour is wrong; the unclipped
    objective is the mechanism's control (reported). The earlier designs' studies, where present, add rows."""
    ds = results["spurious_rewards_clip"]
    gain = lambda b, o: per_seed(ds["gain"], base=b, optimizer=o)  # noqa: E731
    details = [f"  random reward, {b:>14} base (base pass@1 {float(ds['base_score'].sel(base=b).mean()):.3f}): "
               + ", ".join(f"{o} {seed_ci(gain(b, o))} (KL {float(ds['kl_to_base'].sel(base=b, optimizer=o).mean()):.2f})"
                           for o in ds["optimizer"].values) for b in ds["base"].values]
    contrasts = {"clip majority_right": gain("majority_right", "clip_sgd"),
                 "clip majority_wrong": gain("majority_wrong", "clip_sgd")}

    def criterion(iv):
        return iv["clip majority_right"].lo > 0 and iv["clip majority_wrong"].hi < iv["clip majority_right"].lo

    passed, iv = judge(contrasts, criterion)
    clip = seed_ci(gain("majority_right", "clip_sgd") - gain("majority_right", "noclip_sgd"))
    details.append(f"  mechanism: on the majority-right base, clip minus no clip {clip}")
    summary = (f"random reward, clipped objective (SGD): majority-right base {iv['clip majority_right']}, "
               f"majority-wrong base {iv['clip majority_wrong']}; clip minus no clip {clip}")
    if "spurious_rewards" in results:
        summary += "; " + _spurious_history(results, details)
    return Verdict(passed, summary, details, contrasts, criterion)


def _spurious_history(results, details) -> str:
    """The first two designs' rows (REINFORCE through Adam, and through plain SGD), where their studies ran."""
    ds = results["spurious_rewards"]
    for v in ds["verifier"].values:
        for b in ds["base"].values:
            row = ", ".join(f"{o} {seed_ci(per_seed(ds['gain'], verifier=v, base=b, optimizer=o))}"
                            for o in ds["optimizer"].values)
            details.append(f"  first design: {v:>6} reward, {b:>8} base: {row}")
    fmt_right = seed_ci(per_seed(ds["gain"], verifier="format", base="rambling", optimizer="reinforce"))
    fmt_short = seed_ci(per_seed(ds["gain"], verifier="format", base="shortcut", optimizer="reinforce"))
    return f"first design (format reward, REINFORCE): rambling base {fmt_right}, shortcut base {fmt_short}"


EDGE_WINDOW = (0.2, 0.7)  # a base at the edge of its competence: some skill, room to learn (fixed in advance)


def check_scaffold_learnability(results) -> Verdict:
    ds = results["scaffold_learnability"]
    chance = 1.0 / 10
    details, contrasts, at_edge_bases = [], {}, []
    for b in ds["base"].values:
        sc = {s: per_seed(ds["gain"], base=b, scaffold=s) for s in ds["scaffold"].values}
        final = {s: seed_ci(per_seed(ds["score"], base=b, scaffold=s)) for s in ds["scaffold"].values}
        start = {s: float(ds["base_score"].sel(base=b, scaffold=s).mean()) for s in ds["scaffold"].values}
        tokens = {s: float(ds["train_tokens"].sel(base=b, scaffold=s).mean()) for s in ds["scaffold"].values}
        for s in ds["scaffold"].values:
            details.append(f"  {b:>8} {s:>10}: base {start[s]:.3f} -> after {final[s]}, gain {seed_ci(sc[s])}; "
                           f"{tokens[s]:,.0f} training tokens")
        contrasts[f"direct after {b}"] = per_seed(ds["score"], base=b, scaffold="direct")
        at_edge = EDGE_WINDOW[0] <= start["scratchpad"] <= EDGE_WINDOW[1]
        diff = seed_ci(sc["scratchpad"] - sc["direct"])
        details.append(f"  {b:>8}: gain difference scratchpad - direct {diff}; base at the edge of competence "
                       f"(scratchpad {EDGE_WINDOW[0]}-{EDGE_WINDOW[1]}): {'yes' if at_edge else 'no'}")
        if at_edge:
            contrasts[f"scratchpad - direct {b}"] = sc["scratchpad"] - sc["direct"]
            at_edge_bases.append(b)
    bases = list(ds["base"].values)

    def direct_ok(iv):
        return all(iv[f"direct after {b}"].hi < chance + 0.1 for b in bases)

    def criterion(iv):
        return bool(at_edge_bases) and all(iv[f"scratchpad - direct {b}"].lo > 0 for b in at_edge_bases) and direct_ok(iv)

    passed, iv = judge(contrasts, criterion)
    shown = ", ".join(f"{b} {iv[f'scratchpad - direct {b}']}" for b in at_edge_bases) or "none"
    summary = (f"gain difference scratchpad - direct on the bases at the edge of competence: {shown}; direct "
               f"answers stay within 0.1 of chance ({chance:.2f}) after post-training on every base: {direct_ok(iv)}")
    return Verdict(passed, summary, details, contrasts, criterion)


def check_distillation(results) -> Verdict:
    ds = results["distillation"]
    g = lambda b, d: per_seed(ds["gain"], base=b, data=d)  # noqa: E731
    details = []
    effects = {}
    for b in ds["base"].values:
        quality = g(b, "exact_diverse") - g(b, "noisy_diverse")  # better teacher, same diversity
        diversity = g(b, "exact_diverse") - g(b, "exact_pool32")  # more diverse prompts, same teacher
        effects[b] = (quality, diversity)
        details.append(f"  {b:>7}: quality effect {seed_ci(quality)}, diversity effect {seed_ci(diversity)}, "
                       f"quality minus diversity {seed_ci(quality - diversity)}")
    b0, b1 = list(effects)
    contrasts = {f"{kind} {b}": effects[b][i] for b in effects for i, kind in enumerate(("quality", "diversity"))}
    contrasts["quality dependence"] = effects[b0][0] - effects[b1][0]
    contrasts["diversity dependence"] = effects[b0][1] - effects[b1][1]
    contrasts["differ"] = (effects[b0][0] - effects[b0][1]) - (effects[b1][0] - effects[b1][1])

    def criterion(iv):
        nonzero = lambda i: i.lo > 0 or i.hi < 0  # noqa: E731
        return (all(iv[f"{kind} {b}"].lo > 0 for b in effects for kind in ("quality", "diversity"))
                and nonzero(iv["quality dependence"]) and nonzero(iv["diversity dependence"])
                and nonzero(iv["differ"]))

    passed, iv = judge(contrasts, criterion)
    q_dep, d_dep, differ = iv["quality dependence"], iv["diversity dependence"], iv["differ"]
    details.append(f"  base dependence: quality {q_dep}, diversity {d_dep}; (quality - diversity) differs by base "
                   f"{differ}")
    summary = f"quality effect depends on the base by {q_dep}, diversity effect by {d_dep}; they differ by {differ}"
    return Verdict(passed, summary, details, contrasts, criterion)


FINDINGS = {
    f.name: f
    for f in [
        Finding("edge_of_competence", "capability grows only at the edge of the base's competence "
                "(Zhang, Neubig and Yue 2025)", ("edge_of_competence_within", "edge_of_competence_edge",
                                                 "edge_of_competence_beyond"), check_edge_of_competence,
                "RL reweights what the base already samples: capability grows where pass@k > 0 and pass@1 < 1; "
                "'beyond' still samples right answers (pass@32 0.14), so RL has a rare signal there", 1),
        Finding("sharpening", "RL sharpens: pass@1 up, pass@k at large k down (Yue et al. 2025)",
                ("sharpening",), check_sharpening,
                "the policy gradient concentrates mass on answers it already finds: entropy falls, coverage shrinks", 1),
        Finding("spurious_rewards", "a reward blind to the answer helps the base whose majority behaviour is right, "
                "through the clip (Shao et al. 2025)", ("spurious_rewards_clip",), check_spurious_rewards,
                "blocked: an answer-blind reward's zero-mean updates diffuse the policy faster than PPO's clip "
                "drifts it towards its (accurate) majority behaviour", 4),
        Finding("contamination", "part of a weak reward's gain disappears on clean items (Wu et al. 2025)",
                ("contamination",), check_contamination,
                "evaluation items leaked into pretraining: a weak reward re-surfaces memorised answers", 1),
        Finding("noisy_verifiers", "noise degrades the gain smoothly; a hackable verifier is exploited",
                ("noisy_verifiers",), check_noisy_verifiers,
                "the advantage's signal scales with 1 - rho0 - rho1; a lucky-set pattern is learnable", 1),
        Finding("over_optimisation", "true reward rises then falls with KL under a learned reward model, its peak "
                "moving out with the model's data (Gao et al. 2022)", ("over_optimisation_rm", "over_optimisation"),
                check_over_optimisation,
                "a reward model fitted to finitely many base traces drifts as the policy moves; the smallest is "
                "exploited at once, the full rise-then-fall shows with the most data", 4),
        Finding("scaffold_learnability", "a scratchpad makes the deep task learnable at the same compute",
                ("scaffold_learnability",), check_scaffold_learnability,
                "a depth-d direct answer needs d attention hops in one pass; a scratchpad makes each step one hop", 3),
        Finding("distillation", "teacher quality and trace diversity act differently and depend on the base "
                "(Havrilla et al. 2024)", ("distillation",), check_distillation,
                "supervised fitting of teacher traces: step errors in the targets against the spread of prompts", 1),
    ]
}


REPORTS = {"entropy_law": (("entropy_dynamics",), report_entropy_law)}


# ------------------------------------------------------------------------------------------------ running
def load(stem: str, size: str, seeds: int | None = None):
    from fi_sim.study import study_from_dict

    path = FINDINGS_DIR / f"{stem}.toml"
    raw = tomllib.loads(path.read_text())
    if size == "small":
        raw["study"]["seeds"] = min(raw["study"].get("seeds", 3), SMALL["seeds"])
        raw.setdefault("world", {})["eval_size"] = min(raw.get("world", {}).get("eval_size", 256), SMALL["eval_size"])
    text = path.read_text()
    if size == "small":  # the results directory records what was run: the file, and the overrides on top of it
        text = (f"# run at small size: seeds = {raw['study']['seeds']} and [world] eval_size = "
                f"{raw['world']['eval_size']} override the values below\n" + text)
    if seeds is not None:  # a pilot (the first seeds) or a run at another power: the override is recorded too
        raw["study"]["seeds"] = seeds
        text = f"# run with seeds = {seeds} (a pilot, --seeds, or experiments/findings/power.json), overriding the value below\n" + text
    return study_from_dict(raw), text


def run_studies(name: str, stems, size: str, out: Path, quiet: bool = True, seeds: int | None = None,
                grow_from: Path | None = None) -> dict:
    """Run (or read, where finished) the studies of a finding or report: stem -> results dataset. `grow_from`: a
    directory of the same studies at fewer seeds (a pilot): a study not yet started is grown from its copy, so
    the pilot's runs are reused (bitwise the runs a fresh directory would compute, see fi_sim.engine.grow)."""
    import shutil

    from fi_sim.engine.runner import run_study

    from fi_sim.engine.store import load_results

    results = {}
    for stem in stems:
        study, text = load(stem, size, seeds)
        path = out / name / stem
        grow = False
        pilot = None if grow_from is None else grow_from / name / stem
        if pilot is not None and not path.exists() and (pilot / "results.nc").exists():
            shutil.copytree(pilot, path)
            grow = True
        done = None
        if (path / "results.nc").exists():  # finished: read it (its receipt is checked) without planning again
            done = load_results(path)
            if done.attrs.get("study_hash") != study.hash:
                done = None  # another version of the study file: run (which refuses a foreign directory)
        # a grown pilot may have been computed by an earlier commit: growth reuses a run only where its compiled
        # program is unchanged (so it is bitwise what this code computes), and the results record both versions
        results[stem] = done if done is not None else run_study(study, path, study_text=text, quiet=quiet,
                                                                grow_study=grow, allow_mixed_code=grow)
    return results


def run_finding(finding: Finding, size: str, out: Path, quiet: bool = True, seeds: int | None = None,
                grow_from: Path | None = None) -> Verdict:
    return finding.check(run_studies(finding.name, finding.studies, size, out, quiet, seeds, grow_from))


def powered_seeds(name: str) -> tuple[int | None, int | None]:
    """The seeds the power computation fixed for a finding (experiments/findings/power.json, written by
    experiments/power.py and committed before the full run), and its pilot's seeds; (None, None) without one."""
    path = FINDINGS_DIR / "power.json"
    if not path.exists():
        return None, None
    import json

    entry = json.loads(path.read_text()).get(name)
    return (None, None) if entry is None else (int(entry["seeds"]), int(entry["pilot_seeds"]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="findings to run (default: all): " + ", ".join(FINDINGS))
    parser.add_argument("--full", action="store_true", help="full size (default: small)")
    parser.add_argument("--out", default=str(ROOT / "runs" / "validation"))
    parser.add_argument("--progress", action="store_true", help="show the engine's progress")
    parser.add_argument("--seeds", type=int, default=None,
                        help="run every named study with this many seeds (a pilot, or another power) instead of its "
                             "file's; results go to <out>/<size>-seeds<N>/")
    args = parser.parse_args(argv)
    from fi_sim.engine import hostcpu

    hostcpu.configure(2)  # the CPU parallelism its study files declare ([engine] cpu_parallelism)
    unknown = [n for n in args.names if n not in FINDINGS and n not in REPORTS]
    if unknown:
        print(f"validate: unknown finding(s) {unknown}; allowed: {', '.join([*FINDINGS, *REPORTS])}", file=sys.stderr)
        return 2
    if args.seeds is not None and args.seeds < 2:
        print(f"validate: --seeds {args.seeds}: allowed: an integer >= 2 (intervals need two seeds)", file=sys.stderr)
        return 2
    size = "full" if args.full else "small"
    out = Path(args.out) / (size if args.seeds is None else f"{size}-seeds{args.seeds}")
    failed = 0
    for name in args.names or [*FINDINGS, *REPORTS]:
        if name in REPORTS:
            stems, report = REPORTS[name]
            print(f"== {name} (a fitted law, reported) [{size}]", flush=True)
            for line in report(run_studies(name, stems, size, out, not args.progress, args.seeds)):
                print(line)
            continue
        finding = FINDINGS[name]
        seeds, grow_from = args.seeds, None
        if args.full and args.seeds is None:  # the seeds the committed power computation fixed, grown from the pilot
            seeds, pilot = powered_seeds(name)
            grow_from = None if pilot is None else Path(args.out) / f"full-seeds{pilot}"
        print(f"== {name}: {finding.title} [{size}{'' if seeds is None else f', {seeds} seeds'}]", flush=True)
        verdict = run_finding(finding, size, out, quiet=not args.progress, seeds=seeds, grow_from=grow_from)
        for line in verdict.details:
            print(line)
        print(f"{'PASS' if verdict.passed else 'FAIL'} {name} {verdict.summary}", flush=True)
        failed += not verdict.passed
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
