"""Progress of a study on stderr: runs done, run-steps per second, ETA; compile time reported apart.

On a terminal the bar is one line redrawn in place; otherwise (a log file, a pipe, a batch job) it is one plain
line per finished chunk, so that logs stay readable. `quiet` prints nothing. The rate counts only time spent
computing chunks (compile time, pretraining and writes are reported separately), so the ETA does not jump when
the first chunk of a group includes a compile.
"""

from __future__ import annotations

import sys
import time


def _duration(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


class Progress:
    BAR_WIDTH = 24

    def __init__(self, total_runs: int, quiet: bool = False, stream=None, tty: bool | None = None):
        self.total = total_runs
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.tty = (hasattr(self.stream, "isatty") and self.stream.isatty()) if tty is None else tty
        self.done = 0  # runs finished (computed or found finished)
        self.resumed = 0
        self.computed = 0  # runs computed in this process
        self.run_steps = 0
        self.compute_s = 0.0
        self.compile_s = 0.0
        self.steps_per_run = 1.0
        self.t0 = time.perf_counter()
        self._bar_shown = False

    # ------------------------------------------------------------------ plain messages
    def log(self, message: str) -> None:
        if self.quiet:
            return
        self._clear_bar()
        print(message, file=self.stream, flush=True)
        self._draw_bar()

    def compiled(self, record) -> None:
        """A compiled executable was built (AOT): its time is reported apart from run time."""
        self.compile_s += record.seconds
        mem = "" if record.memory_bytes is None else f", {record.memory_bytes / 2**20:,.1f} MiB per device"
        self.log(f"  {record.describe()}{mem}")

    # ------------------------------------------------------------------ chunks of runs
    def set_total(self, runs: int, steps_per_run: float) -> None:
        self.total = runs
        self.steps_per_run = steps_per_run

    def skipped(self, runs: int) -> None:
        self.done += runs
        self.resumed += runs
        self._update(None)

    def chunk(self, label: str, runs: int, run_steps: int, seconds: float) -> None:
        self.done += runs
        self.computed += runs
        self.run_steps += run_steps
        self.compute_s += seconds
        self._update(f"  {label}: {runs} runs in {seconds:.1f}s ({run_steps / max(seconds, 1e-9):,.0f} run-steps/s)")

    @property
    def rate(self) -> float:
        """Run-steps per second of computing time so far."""
        return self.run_steps / self.compute_s if self.compute_s > 0 else 0.0

    @property
    def eta(self) -> float | None:
        if not self.run_steps:
            return None
        return (self.total - self.done) * self.steps_per_run / self.rate

    def status_line(self) -> str:
        eta = "?" if self.eta is None else _duration(self.eta)
        resumed = f" ({self.resumed} resumed)" if self.resumed else ""
        return (f"{self.done}/{self.total} runs{resumed}, {self.rate:,.0f} run-steps/s, ETA {eta}, "
                f"compile {self.compile_s:.1f}s")

    def _update(self, line: str | None) -> None:
        if self.quiet:
            return
        if self.tty:
            self._draw_bar(force=True)
        elif line is not None:
            print(f"{line}; {self.status_line()}", file=self.stream, flush=True)

    # ------------------------------------------------------------------ the bar (terminals only)
    def _bar(self) -> str:
        frac = self.done / self.total if self.total else 1.0
        filled = int(round(frac * self.BAR_WIDTH))
        return f"[{'#' * filled}{'.' * (self.BAR_WIDTH - filled)}] {self.status_line()}"

    def _draw_bar(self, force: bool = False) -> None:
        if self.quiet or not self.tty or not (force or self._bar_shown):
            return
        self.stream.write("\r\x1b[2K" + self._bar())
        self.stream.flush()
        self._bar_shown = True

    def _clear_bar(self) -> None:
        if self.tty and self._bar_shown:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()

    def close(self) -> None:
        if self.tty and self._bar_shown and not self.quiet:
            self.stream.write("\n")
            self.stream.flush()
            self._bar_shown = False

    def summary(self) -> str:
        wall = time.perf_counter() - self.t0
        return (f"{self.computed} runs computed in {_duration(self.compute_s)} of compute "
                f"({self.rate:,.0f} run-steps/s), {self.resumed} resumed; compile {self.compile_s:.1f}s; "
                f"wall {_duration(wall)}")
