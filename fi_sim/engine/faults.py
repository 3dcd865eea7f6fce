"""Bad runs: which post-training runs are left out of every truth computation, and why.

Every run gets a status code, assembled into the `status` flag variable of the results (flag_values /
flag_meanings attrs, CF convention):

    0 ok          every check passed
    1 nonfinite   the trained parameters or the evaluation scores hold NaN or inf
    2 diverged    finite, but the run left the base's support: its KL to the base over the last 10% of steps
                  is non-finite or above MAX_KL_PER_POSITION nats per sequence position (30 nats: on average the
                  policy puts its mass where the base puts less than e^-30 ~ 1e-13 — an update that blew up,
                  not learning; legitimate runs of the bundled worlds stay far below)
    3 collapsed   finite and inside that bound, but the run destroyed what its base could do and ran away from
                  it: (a) its true accuracy over the last 10% of post-training steps is exactly 0, (b) its true
                  score on the held-out items is 0 under every budget, (c) its base scored above 0 under at
                  least one budget (there was competence to lose), and (d) its KL to the base is at least
                  MIN_COLLAPSE_KL = 20 nats per sequence

Codes 1 and 2 are decided per chunk from the run's own outputs (`run_status`). Code 3 needs the base's scores,
so it is decided when the results are assembled (`collapsed`, called by `fi_sim.engine.results.assemble`); a
chunk's receipt may therefore say ok for a run the results call collapsed.

Why a separate rule rather than a tighter divergence bound. The divergence bound is a per-position statement
("the policy's tokens are ones the base essentially never emits"), and a collapsed policy does not reach it: at
the largest allowed learning rate (optimizer `learning_rate` = 10) REINFORCE drives the policy within a few
steps to one deterministic, wrong output (entropy 0) whose KL to the base is only 24-61 nats per *sequence*
(2-5 per position; issue #15 reports 31-35 for the demo's), far under 30 x sequence length = 360. A per-sequence
bound alone would not separate the two kinds of run either: legitimate runs that learn something surprising
move far too — REINFORCE at the default learning rate under an answer-blind random reward measured 4-10 nats per
sequence, and that harm is a finding to keep, not a fault. What marks a collapse is the conjunction: every
right answer is gone (truth, not proxy: (a) and (b)), there was something to lose (c), and the policy got there
by leaving the base (d) rather than by a small drift from a base that was barely right. 20 nats is twice the
largest KL of a legitimate run we measured (the typical trained sequence is e^-20 ~ 2e-9 times as likely under
the base as under the policy). A run that unlearns everything at a small KL (a weak base pushed to 0 by a
noisy verifier) stays ok: its negative gain is the answer to the study's question. A degenerate run that keeps
a lucky constant answer (right on 1 value in `modulus`) is not caught by (a)/(b) and stays ok.

A run that is not ok has all its metrics set to NaN in the results (never silently averaged) and a warning
names how many; `fi_sim.attribution.effect_summary` leaves NaN seeds out of the truth with a warning of its own.
The raw outputs stay in the chunk files, so a different bound can be applied later.
"""

from __future__ import annotations

import numpy as np

OK, NONFINITE, DIVERGED, COLLAPSED = 0, 1, 2, 3
NAMES = {OK: "ok", NONFINITE: "nonfinite", DIVERGED: "diverged", COLLAPSED: "collapsed"}
WHY = {NONFINITE: "produced non-finite values", DIVERGED: "diverged (see fi_sim.engine.faults)",
       COLLAPSED: "collapsed to true accuracy 0 far from their base (see fi_sim.engine.faults)"}
MAX_KL_PER_POSITION = 30.0
MIN_COLLAPSE_KL = 20.0  # nats per sequence


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


def collapsed(train_true_accuracy, score, base_score, kl_to_base) -> np.ndarray:
    """Whether each run collapsed (rule (a)-(d) of the module docstring). Arguments have a leading runs axis
    (or are one run's values): `train_true_accuracy` and `kl_to_base` one value per run, `score` and
    `base_score` one value per budget. Missing values (NaN) never make a run collapsed."""
    accuracy = np.asarray(train_true_accuracy, np.float64)
    n = accuracy.size
    accuracy = accuracy.reshape(n)
    score = np.asarray(score, np.float64).reshape(n, -1)
    base = np.asarray(base_score, np.float64).reshape(n, -1)
    kl = np.asarray(kl_to_base, np.float64).reshape(n)
    with np.errstate(invalid="ignore"):
        return ((accuracy == 0.0) & np.all(score == 0.0, axis=1) & np.any(base > 0.0, axis=1)
                & (kl >= MIN_COLLAPSE_KL))


def describe(status: np.ndarray) -> str:
    counts = {NAMES[c]: int(np.sum(status == c)) for c in NAMES if np.any(status == c)}
    return ", ".join(f"{v} {k}" for k, v in counts.items())
