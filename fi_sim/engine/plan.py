"""Planning: a study becomes base-pretraining jobs and compiled groups of post-training runs.

Only choices that change array shapes split a study into separately compiled groups: the policy's size and
pretraining length (base), the number of steps and batch sizes (optimizer). Everything else is a per-run array
inside a group. Bases are pretrained once per base level and seed and shared by every run that uses them;
budget levels are evaluated from one set of samples, so they add no runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fi_sim.evaluate import EvalStatic, num_eval_samples
from fi_sim.factors import FACTOR_NAMES, MODULES
from fi_sim.engine.runfn import run_statics
from fi_sim.interface import TRAINING_FACTORS, content_hash, run_key_word, stable_run_id
from fi_sim.study import Study
from fi_sim.train import PosttrainStatic, PretrainStatic
from fi_sim.world.policy import PolicyConfig
from fi_sim.world.tokens import Vocab

TRAIN_AXES = tuple(FACTOR_NAMES.index(f) for f in TRAINING_FACTORS)


@dataclass(frozen=True)
class BaseJob:
    index: int  # position in Plan.bases
    level_index: int  # which base level of the study
    seed: int
    uid: int  # stable id of the base level in this world (key derivation)
    static: PretrainStatic


@dataclass(frozen=True)
class BaseEvalJob:
    """A base evaluated under one scaffold and verifier: shared by every run that starts from that base."""

    index: int
    base_job: int
    scaffold: int  # level index
    verifier: int  # level index
    static: EvalStatic


@dataclass(frozen=True)
class RunSpec:
    run_id: int
    cell: tuple[int, ...]  # level index per training factor (TRAINING_FACTORS order)
    seed: int
    base_job: int  # index into Plan.bases
    base_eval: int  # index into Plan.base_evals


@dataclass(frozen=True)
class GroupStatic:
    posttrain: PosttrainStatic
    evaluate: EvalStatic

    @property
    def policy(self) -> PolicyConfig:
        return self.posttrain.policy


@dataclass
class Group:
    index: int
    static: GroupStatic
    runs: list[RunSpec] = field(default_factory=list)


DEFAULT_CHUNK_SIZE = 32  # only where nothing chose one (plain `make_plan`); `sizing.size_plan` chooses from memory
BASE_BATCH = 2  # bases per device per compiled pretraining call (fixed: a base never depends on its neighbours)


@dataclass
class Plan:
    study: Study
    bases: list[BaseJob]
    base_evals: list[BaseEvalJob]
    groups: list[Group]
    chunk_size: int  # runs per chunk: the unit of durable writes, of resume and of sharing among processes
    device_batch: int = 0  # runs computed at once on each device (0: the whole chunk); fixed for a study
    shared_key_words: int = 0  # runs whose PRNG key word another run of the study also has (see run_key_word)

    def __post_init__(self):
        if not self.device_batch:
            self.device_batch = self.chunk_size

    @property
    def num_runs(self) -> int:
        return sum(len(g.runs) for g in self.groups)

    @property
    def num_chunks(self) -> int:
        return sum(-(-len(g.runs) // self.chunk_size) for g in self.groups)

    def base_eval_chunks(self):
        """(chunk index, jobs) for every fixed-size chunk of base evaluations."""
        for c in range(0, len(self.base_evals), self.chunk_size):
            yield c // self.chunk_size, self.base_evals[c : c + self.chunk_size]

    def base_batches(self):
        """(static, jobs) for every compiled batch of BASE_BATCH base jobs of the same shape, in order."""
        by_static: dict = {}
        for job in self.bases:
            by_static.setdefault(job.static, []).append(job)
        for static, jobs in by_static.items():
            for c in range(0, len(jobs), BASE_BATCH):
                yield static, jobs[c : c + BASE_BATCH]

    def layout(self) -> dict:
        """What every process and every resume of a results directory must share."""
        return {"chunk_size": self.chunk_size, "device_batch": self.device_batch, "base_batch": BASE_BATCH}

    def chunks(self):
        """(group, chunk index, runs) for every fixed-size chunk, in a deterministic order."""
        for g in self.groups:
            for c in range(0, len(g.runs), self.chunk_size):
                yield g, c // self.chunk_size, g.runs[c : c + self.chunk_size]

    def describe(self) -> str:
        lines = [f"study {self.study.name!r}: {self.num_runs} post-training runs, {len(self.bases)} bases "
                 f"({len(self.base_evals)} base evaluations), {len(self.groups)} compiled group(s), "
                 f"chunk size {self.chunk_size}, device batch {self.device_batch}"]
        if self.shared_key_words:
            lines.append(f"  note: {self.shared_key_words} run(s) share a 31-bit PRNG key word with another run of "
                         "the study (expected about n^2/2^32 for n runs): distinct runs with correlated sampling "
                         "noise; see fi_sim.interface.run_key_word")
        for g in self.groups:
            p = g.static.posttrain
            n = -(-len(g.runs) // self.chunk_size)
            lines.append(f"  group {g.index}: {len(g.runs)} runs in {n} chunk(s); model width {p.policy.width} x "
                         f"{p.policy.num_layers} layers; {p.steps} steps x {p.prompts_per_step} prompts x "
                         f"{p.samples_per_prompt} samples; eval {g.static.evaluate.num_samples} samples/item")
        return "\n".join(lines)


def policy_config(study: Study, base_level) -> PolicyConfig:
    vocab = Vocab(study.world.task_world())
    p = base_level.params
    return PolicyConfig(vocab.size, vocab.sequence_length, p["width"], p["num_layers"], p["num_heads"])


def base_uid(study: Study, level) -> int:
    return int(content_hash({"world": study.world.card(), "base": level.card()})[:8], 16) & 0x7FFFFFFF


def training_cells(study: Study) -> list[tuple[int, ...]]:
    """Distinct cells of the training factors (the budget adds no runs), in design order."""
    seen, out = set(), []
    for cell in study.cells():
        t = tuple(cell[a] for a in TRAIN_AXES)
        if t not in seen:
            seen.add(t)
            out.append(t)
    return out


def make_plan(study: Study, chunk_size: int | None = None, device_batch: int | None = None) -> Plan:
    """The study's work: bases, base evaluations, and groups of runs in chunks of `chunk_size` (default: the
    study's [engine] chunk_size, else DEFAULT_CHUNK_SIZE), computed `device_batch` at a time on each device
    (default: the study's, else the whole chunk). Choosing sizes from a memory bound is `sizing.size_plan`."""
    world = study.world.task_world()
    budgets = tuple(MODULES["budget"].spec(level) for level in study.factors["budget"])
    num_samples = num_eval_samples(budgets, study.world.eval_min_samples)

    bases: list[BaseJob] = []
    base_index: dict[tuple[int, int], int] = {}
    for li, level in enumerate(study.factors["base"]):
        pstatic = PretrainStatic(world, policy_config(study, level), level.params["steps"], level.params["batch_size"])
        for seed in study.seeds:
            base_index[(li, seed)] = len(bases)
            bases.append(BaseJob(len(bases), li, seed, base_uid(study, level), pstatic))

    groups: dict[GroupStatic, Group] = {}
    base_evals: dict[tuple[int, int, int], BaseEvalJob] = {}
    b_axis = TRAINING_FACTORS.index("base")
    s_axis, v_axis = TRAINING_FACTORS.index("scaffold"), TRAINING_FACTORS.index("verifier")
    for cell in training_cells(study):
        base_level = study.factors["base"][cell[b_axis]]
        static = GroupStatic(*run_statics(study, cell, policy_config(study, base_level), budgets, num_samples))
        group = groups.setdefault(static, Group(len(groups), static))
        levels = {f: study.factors[f][i] for f, i in zip(TRAINING_FACTORS, cell)}
        for seed in study.seeds:
            run_id = stable_run_id(study.world, levels, seed)
            job = base_index[(cell[b_axis], seed)]
            ekey = (job, cell[s_axis], cell[v_axis])
            if ekey not in base_evals:
                base_evals[ekey] = BaseEvalJob(len(base_evals), job, cell[s_axis], cell[v_axis], static.evaluate)
            group.runs.append(RunSpec(run_id, cell, seed, job, base_evals[ekey].index))
    chunk_size = chunk_size or study.engine.chunk_size or DEFAULT_CHUNK_SIZE
    device_batch = device_batch or getattr(study.engine, "device_batch", None) or chunk_size
    plan = Plan(study, bases, list(base_evals.values()), list(groups.values()), chunk_size, min(device_batch, chunk_size))
    ids = [r.run_id for g in plan.groups for r in g.runs]
    if len(set(ids)) != len(ids):  # 63-bit ids within MAX_RUNS: p < 1e-5; a collision must never be silent
        from fi_sim.errors import ResultsError

        raise ResultsError(f"two of the study's {len(ids)} runs have the same 63-bit run id (a hash collision, "
                           "p < 1e-5 at this size); please report it with the study file")
    words = len(ids) - len({run_key_word(i) for i in ids})
    plan.shared_key_words = words
    return plan


def chunk_name(group_index: int, chunk_index: int) -> str:
    return f"g{group_index:02d}-c{chunk_index:05d}"


def base_eval_name(jobs) -> str:
    return f"e{jobs[0].index:05d}-{jobs[-1].index:05d}"
