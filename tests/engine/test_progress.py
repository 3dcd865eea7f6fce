"""Progress: a redrawn bar on a terminal, plain lines in a log, nothing when quiet; compile time apart."""

import io

from fi_sim.engine.execute import CompileRecord
from fi_sim.engine.progress import Progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def feed(p: Progress):
    p.set_total(8, 100)
    p.compiled(CompileRecord("group 0", 3.5, 2 * 2**20))
    p.skipped(2)
    p.chunk("group 0 chunk 1", 2, 200, 0.5)
    p.chunk("group 0 chunk 2", 2, 200, 0.5)
    p.close()


def test_terminal_bar_log_lines_and_quiet():
    tty = Terminal()
    feed(Progress(0, stream=tty))
    text = tty.getvalue()
    assert "\r" in text and "[" in text and "6/8 runs (2 resumed)" in text and "400 run-steps/s" in text
    assert "ETA 0s" in text and "compile 3.5s" in text and "compiled group 0 in 3.5s" in text
    log = io.StringIO()
    feed(Progress(0, stream=log))
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert any(x.startswith("  group 0 chunk 2: 2 runs") and "6/8 runs" in x and "ETA" in x for x in lines)
    quiet = io.StringIO()
    feed(Progress(0, quiet=True, stream=quiet))
    assert quiet.getvalue() == ""


def test_rate_and_eta_count_compute_time_only():
    p = Progress(0, stream=io.StringIO())
    p.set_total(10, 50)
    p.compiled(CompileRecord("g", 100.0, None))
    p.chunk("c", 2, 100, 1.0)
    assert p.rate == 100 and p.eta == 8 * 50 / 100
