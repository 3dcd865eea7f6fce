"""Frozen post-training datasets: prompt-response-reward tuples, released once and replayed under any interface.

A frozen dataset is what a paper releases: M prompts (the problems and their encoded prompts), G responses to
each (the context stream and the policy's actions, which differ only at tool calls), each response's reward
under the generating verifier, and the generator's log-probabilities (for off-policy ratios). Its provenance
— the interface card that generated it, the seed, the filters — travels inside the file, and its SHA-256 goes
into the interface card of every run that replays it.

Files are `.npz` archives; `load` checks them against the study's world and names what does not fit.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fi_sim.errors import Problem, ValidationError

FORMAT = "fi_sim-frozen-dataset-1"
ARRAYS = ("x0", "skills", "depth", "prompts", "context", "actions", "logprob", "reward")


@dataclass(frozen=True, eq=False)
class FrozenDataset:
    """Arrays: x0 [M], skills [M, D], depth [M], prompts [M, P], context/actions/logprob [M, G, R], reward [M, G].
    Equality and hashing go by content (sha256), so a dataset can be part of a static configuration."""

    sha256: str
    arrays: dict = field(repr=False)
    provenance: dict = field(default_factory=dict, repr=False)

    def __hash__(self):
        return hash(self.sha256)

    def __eq__(self, other):
        return isinstance(other, FrozenDataset) and other.sha256 == self.sha256

    @property
    def num_prompts(self) -> int:
        return int(self.arrays["x0"].shape[0])

    @property
    def group_size(self) -> int:
        return int(self.arrays["reward"].shape[1])

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, format=np.array(FORMAT), provenance=np.array(json.dumps(self.provenance, sort_keys=True)),
                 **self.arrays)
        return buf.getvalue()


def make(arrays: dict, provenance: dict) -> FrozenDataset:
    arrays = {k: np.asarray(arrays[k]) for k in ARRAYS}
    digest = hashlib.sha256()
    for k in ARRAYS:
        digest.update(k.encode())
        digest.update(np.ascontiguousarray(arrays[k]).tobytes())
    digest.update(json.dumps(provenance, sort_keys=True).encode())
    return FrozenDataset(digest.hexdigest(), arrays, provenance)


def save(dataset: FrozenDataset, path: str | Path) -> Path:
    """Write atomically (temporary file, fsync, rename): a reader never sees half a dataset."""
    import os
    import tempfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "wb") as f:
        f.write(dataset.to_bytes())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def load(path: str | Path, world=None, field_name: str = "dataset") -> FrozenDataset:
    """Read a frozen dataset; with a world (TaskWorld), check it fits that world's vocabulary and layout."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            if "format" not in z.files or str(z["format"]) != FORMAT:
                raise ValidationError(Problem(field_name, str(path), f"a frozen dataset file ({FORMAT})"))
            missing = [k for k in ARRAYS if k not in z.files]
            if missing:
                raise ValidationError(Problem(field_name, str(path), f"a frozen dataset with arrays {missing}"))
            arrays = {k: z[k] for k in ARRAYS}
            provenance = json.loads(str(z["provenance"]))
    except (OSError, ValueError, KeyError) as err:
        if isinstance(err, ValidationError):
            raise
        raise ValidationError(Problem(field_name, str(path), f"a readable frozen dataset file ({err})")) from None
    dataset = make(arrays, provenance)
    if world is not None:
        check(dataset, world, field_name, str(path))
    return dataset


def check(dataset: FrozenDataset, world, field_name: str = "dataset", label: str = "dataset") -> None:
    from fi_sim.world.tokens import Vocab

    vocab = Vocab(world)
    a = dataset.arrays
    M = a["x0"].shape[0]
    problems = []
    expected = {
        "skills": (M, world.max_depth), "depth": (M,), "prompts": (M, vocab.prompt_length),
        "context": (M, None, vocab.response_length), "actions": (M, None, vocab.response_length),
        "logprob": (M, None, vocab.response_length), "reward": (M, None),
    }
    for name, shape in expected.items():
        got = a[name].shape
        if len(got) != len(shape) or any(s is not None and g != s for g, s in zip(got, shape)):
            problems.append(Problem(f"{field_name} ({label}): {name}", got, f"shape {shape} for this world"))
    if not problems and (a["prompts"].max() >= vocab.size or a["context"].max() >= vocab.size):
        problems.append(Problem(f"{field_name} ({label})", int(max(a["prompts"].max(), a["context"].max())),
                                f"token ids below the world's vocabulary size {vocab.size}"))
    if M == 0:
        problems.append(Problem(f"{field_name} ({label})", 0, "at least one prompt"))
    if problems:
        raise ValidationError(problems)
