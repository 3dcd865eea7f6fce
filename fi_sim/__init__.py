"""fi_sim: simulated attribution studies of post-training reasoning.

The top-level package stays light: heavy parts (JAX, the simulator) are imported on first use, so that
`fi_sim.attribution` and `fi_sim.errors` can be used without the simulator.
"""

from __future__ import annotations

__version__ = "0.1.0"


def code_identity() -> str:
    """This code's identity: the package version and a hash of its source, e.g. '0.1.0+3f2a9c1d04be'.

    The hash covers every `*.py` file under the package directory (sorted by relative path, path and content
    hashed), so it changes with any edit of the code, installed wheel and checkout alike, while the version
    string does not. A results directory records it (manifest, receipts, results.nc) so that a resume by other
    code is refused instead of silently mixing results (see `fi_sim.engine.store`)."""
    return code_provenance()["id"]


def code_provenance() -> dict:
    """The code identity with what it is made of: version, source hash, and the git commit when the package
    directory is a git checkout (informational only: the source hash is what identifies the code)."""
    if _PROVENANCE:
        return dict(_PROVENANCE[0])
    import hashlib
    from pathlib import Path

    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py"), key=lambda p: p.relative_to(root).as_posix()):
        if "__pycache__" in path.parts:
            continue
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    source = digest.hexdigest()
    info = {"id": f"{__version__}+{source[:12]}", "version": __version__, "source_sha256": source,
            "git_commit": _git_commit(root)}
    _PROVENANCE.append(info)
    return dict(info)


_PROVENANCE: list = []  # computed once per process


def _git_commit(root) -> str | None:
    """HEAD's commit of the git checkout holding `root`, read from .git without running git (None otherwise)."""
    for top in (root, *root.parents):
        git = top / ".git"
        if not git.exists():
            continue
        try:
            if git.is_file():  # a worktree: "gitdir: PATH"
                git = (top / git.read_text().split(":", 1)[1].strip()).resolve()
            head = (git / "HEAD").read_text().strip()
            if not head.startswith("ref:"):
                return head
            ref = head.split(":", 1)[1].strip()
            common = git / "commondir"
            base = (git / common.read_text().strip()).resolve() if common.exists() else git
            for where in (git, base):
                if (where / ref).exists():
                    return (where / ref).read_text().strip()
            packed = base / "packed-refs"
            if packed.exists():
                for line in packed.read_text().splitlines():
                    if line.endswith(" " + ref):
                        return line.split()[0]
        except (OSError, IndexError):
            return None
        return None
    return None

_LAZY = {
    "load_results": ("fi_sim.engine.store", "load_results"),
    "Interface": ("fi_sim.interface", "Interface"),
    "InterfaceCard": ("fi_sim.interface", "InterfaceCard"),
    "Study": ("fi_sim.study", "Study"),
    "load_study": ("fi_sim.study", "load_study"),
    "run_study": ("fi_sim.engine.runner", "run_study"),
    "to_table": ("fi_sim.tables", "to_table"),
    "export_table": ("fi_sim.tables", "export"),
    "validate_card": ("fi_sim.cards", "validate_card"),
    "diff_cards": ("fi_sim.cards", "diff_cards"),
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'fi_sim' has no attribute {name!r}")


__all__ = ["__version__", "code_identity", "code_provenance", *_LAZY]
