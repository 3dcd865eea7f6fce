"""Bad runs: which post-training runs are left out of every truth computation, and why.

Every run gets a status code, written into its chunk beside its outputs and assembled into the `status` flag
variable of the results (flag_values / flag_meanings attrs, CF convention):

    0 ok          every check passed
    1 nonfinite   the trained parameters or the evaluation scores hold NaN or inf
    2 diverged    finite, but the run left the base's support: its KL to the base over the last 10% of steps
                  is non-finite or above MAX_KL_PER_POSITION nats per sequence position (30 nats: on average the
                  policy puts its mass where the base puts less than e^-30 ~ 1e-13 — an update that blew up,
                  not learning; legitimate runs of the bundled worlds stay below a few nats per sequence)

A run that is not ok has all its metrics set to NaN in the results (never silently averaged) and a warning
names how many; `fi_sim.attribution.effect_summary` leaves NaN seeds out of the truth with a warning of its own.
The raw outputs stay in the chunk files, so a different bound can be applied later.
"""

from __future__ import annotations

import numpy as np

OK, NONFINITE, DIVERGED = 0, 1, 2
NAMES = {OK: "ok", NONFINITE: "nonfinite", DIVERGED: "diverged"}
WHY = {NONFINITE: "produced non-finite values", DIVERGED: "diverged (see fi_sim.engine.faults)"}
MAX_KL_PER_POSITION = 30.0


def kl_bound(static) -> float:
    """The divergence bound on `kl_to_base` (nats per sequence) for a group's static configuration."""
    return MAX_KL_PER_POSITION * static.posttrain.policy.sequence_length


def run_status(outputs: dict[str, np.ndarray], static) -> np.ndarray:
    """Status code per row of a chunk's outputs (a dict of arrays with a leading runs axis, treated generically:
    only the flags it holds are read)."""
    n = next(iter(outputs.values())).shape[0]
    status = np.full(n, OK, np.int8)
    if "finite" in outputs:
        status[~np.asarray(outputs["finite"], bool).reshape(n)] = NONFINITE
    if "kl_to_base" in outputs:
        kl = np.asarray(outputs["kl_to_base"], np.float64).reshape(n, -1)
        bad = ~np.all(np.isfinite(kl), axis=1) | np.any(kl > kl_bound(static), axis=1)
        status[(status == OK) & bad] = DIVERGED
    return status


def describe(status: np.ndarray) -> str:
    counts = {NAMES[c]: int(np.sum(status == c)) for c in NAMES if np.any(status == c)}
    return ", ".join(f"{v} {k}" for k, v in counts.items())
