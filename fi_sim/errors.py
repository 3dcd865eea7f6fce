"""Typed errors for bad input.

Every error names the field, the value given and what is allowed, so that the CLI can print it in one or
two lines and a caller can react to it programmatically. This module imports nothing from the rest of
fi_sim, so that every layer (the attribution lab included) can use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable


class FiSimError(Exception):
    """Base class of every error fi_sim raises on purpose (bad input, corrupt results, ...)."""


@dataclass
class Problem:
    """One thing wrong with an input: where, what was given, and what would have been accepted."""

    field: str
    value: Any
    allowed: str

    def __str__(self) -> str:
        return f"{self.field}: got {self.value!r}; allowed: {self.allowed}"


class ValidationError(FiSimError, ValueError):
    """One or more problems with user input, all reported at once."""

    def __init__(self, problems: Problem | Iterable[Problem]):
        if isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        if not self.problems:
            raise ValueError("ValidationError needs at least one problem")
        super().__init__(self._message())

    def _message(self) -> str:
        if len(self.problems) == 1:
            return f"invalid {self.problems[0]}"
        lines = [f"{len(self.problems)} problems:"] + [f"  - {p}" for p in self.problems]
        return "\n".join(lines)

    @property
    def fields(self) -> list[str]:
        return [p.field for p in self.problems]


def invalid(field: str, value: Any, allowed: str) -> ValidationError:
    """Shorthand for a ValidationError with a single problem."""
    return ValidationError(Problem(field, value, allowed))


class ResultsError(FiSimError):
    """A results directory that is missing, corrupt, foreign or inconsistent with its manifest."""
