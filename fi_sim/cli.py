"""The `fi-sim` command line.

    fi-sim plan STUDY.toml               print the groups, runs, chunk size, estimated memory and time
    fi-sim run STUDY.toml --out DIR      run (or resume) a study; writes DIR/results.nc and DIR/report.md
                                         (--process-index i --num-processes P: this process's share only)
    fi-sim merge DIR                     assemble DIR/results.nc once every share of a split study is done
    fi-sim report DIR                    (re)write DIR/report.md with figures
    fi-sim card STUDY.toml               print the interface card of every cell of a study
    fi-sim levels [--full | --json]      print the catalogue of factor levels (one line each by default)
    fi-sim attribute DIR | --game NAME   score attribution methods against the truth (leaderboard);
                                         --baseline/--target CELL, default: the study's largest gain
    fi-sim --version                     the package version and, in a git checkout, its commit
    fi-sim attribute TABLE.csv --metric COL   what a real ablation table supports: aliases, estimates, claims
    fi-sim design next TABLE.csv --budget N   the N runs that would most sharpen the attribution
    fi-sim export DIR --format csv|parquet    the results as a table: one row per run and budget
    fi-sim card validate FILE | card diff A B check a hand-written card against the schema; compare two

Bad input prints one line per problem (field, value given, what is allowed) without a traceback and exits
with status 2; nothing already computed is lost. Output cut short by a closed pipe (`fi-sim levels | head`)
ends quietly with status 141 (128 + SIGPIPE, as a shell reports a process killed by it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from fi_sim.errors import FiSimError, ValidationError


def _cmd_run(args) -> int:
    from fi_sim.engine.runner import run_study
    from fi_sim.study import load_study

    study = load_study(args.study)
    index, count = args.process_index, args.num_processes
    if (index is None) != (count is None):
        raise _usage_error("--process-index/--num-processes", f"{index}/{count}", "both or neither")
    if count is not None and not 0 <= index < count:
        raise _usage_error("--process-index", index, f"an integer in 0..{count - 1} (--num-processes {count})")
    if args.coordinator is not None and not args.distributed:
        raise _usage_error("--coordinator", args.coordinator, "only with --distributed")
    if args.distributed:
        if args.coordinator is not None and count is None:
            raise _usage_error("--coordinator", args.coordinator,
                               "with --num-processes P and --process-index i (this process's id in 0..P-1)")
        _initialize_distributed(args.coordinator, count, index)
        index, count = None, None  # run_study takes them from jax.distributed (engine.runner.process_layout)
    ds = run_study(study, args.out, study_text=Path(args.study).read_text(), quiet=args.quiet,
                   chunk_size=args.chunk_size, device_batch=args.device_batch, process_index=index,
                   num_processes=count, devices=args.devices, use_cache=not args.no_cache,
                   wait_seconds=args.wait, grow_study=args.grow, allow_mixed_code=args.allow_mixed_code)
    if ds is not None and not args.no_report:
        from fi_sim.report import write_report

        path = write_report(args.out)
        if not args.quiet:
            print(f"report: {path}", file=sys.stderr)
    return 0


def _initialize_distributed(coordinator: str | None, count: int | None, index: int | None) -> None:
    """`jax.distributed.initialize`: from the cluster's environment (SLURM, Open MPI, ...) when no coordinator is
    given, else with this coordinator (host:port of process 0's coordination service), P and i."""
    import jax

    from fi_sim.errors import FiSimError

    try:
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=count, process_id=index)
    except (RuntimeError, ValueError) as err:  # no cluster environment, an unreachable coordinator, ...
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        where = f"coordinator {coordinator}" if coordinator else "the cluster's environment"
        raise FiSimError(f"--distributed: jax.distributed.initialize() failed with {where}: {first}; give "
                         "--coordinator HOST:PORT --num-processes P --process-index i, or run without "
                         "--distributed") from None


def _cmd_plan(args) -> int:
    from fi_sim.engine import cache, execute, sizing
    from fi_sim.study import load_study

    from fi_sim.engine import hostcpu

    study = load_study(args.study)
    hostcpu.configure(study.engine.parallelism)
    cache.enable(disabled=args.no_cache)
    executor = execute.Executor(execute.local_devices(args.devices))
    try:
        s = sizing.size_plan(study, executor, chunk_size=args.chunk_size, device_batch=args.device_batch)
        if args.calibrate:
            sizing.calibrate(s, executor)
        print(sizing.describe(s, sizing.estimate(s, executor)))
    finally:
        executor.close()
    return 0


def _cmd_merge(args) -> int:
    from fi_sim.engine.runner import merge

    merge(args.dir, quiet=args.quiet)
    if not args.no_report:
        from fi_sim.report import write_report

        path = write_report(args.dir)
        if not args.quiet:
            print(f"report: {path}", file=sys.stderr)
    return 0


def _cmd_report(args) -> int:
    from fi_sim.report import write_report

    print(write_report(args.dir))
    return 0


def _cmd_card(args) -> int:
    from fi_sim.study import load_study

    handled = _cmd_card_forms(args)
    if handled is not None:
        return handled

    study = load_study(args.study)
    cards = study.cards()
    if args.summary:
        for cell, card in zip(study.cells(), cards):
            names = " ".join(f"{f}={lvl['level']}" for f, lvl in card.content["factors"].items())
            print(f"{card.hash[:16]}  {names}")
    else:
        print(json.dumps([json.loads(c.to_json(indent=None)) for c in cards], indent=2, sort_keys=True))
    return 0


def _cmd_levels(args) -> int:
    from fi_sim.factors import FACTOR_NAMES, FACTORS

    factors = [args.factor] if args.factor else list(FACTOR_NAMES)
    if args.json:
        print(json.dumps({f: FACTORS[f].catalogue() for f in factors}, indent=2, default=str))
        return 0
    if not args.full:  # one line per level; the parameters behind --full
        rows = [(f, row["preset"], f"[{row['mechanism']}]", " ".join(str(row["doc"]).split()))
                for f in factors for row in FACTORS[f].catalogue()]
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[3])
        return 0
    for f in factors:
        factor = FACTORS[f]
        print(f"{f}: {factor.doc}")
        for row in factor.catalogue():
            print(f"  {row['preset']}  [{row['mechanism']}]  {row['doc']}")
            for p in row["params"]:
                static = " (static: compiles its own group)" if p["static"] else ""
                print(f"      {p['name']} = {p['value']!r}  -- {p['doc']}; {p['allowed']}{static}")
        print()
    return 0


def _cmd_attribute(args) -> int:
    from fi_sim.attribution.leaderboard import attribute_main

    if args.dir is not None and _is_table(args.dir):
        return _cmd_attribute_table(args)

    if (args.dir is None) == (args.game is None):
        raise _usage_error("attribute", f"dir={args.dir!r}, --game={args.game!r}",
                           "exactly one of a results directory or --game NAME")
    options = {"rng_seed": args.seed}
    if args.regimes:
        options["regimes"] = args.regimes.split(",")
    if args.dir is None and (args.baseline is not None or args.target is not None):
        raise _usage_error("--baseline/--target", args.baseline if args.baseline is not None else args.target,
                           "only with a results directory (a game has its own baseline and target)")
    if args.dir is not None:
        from fi_sim.engine.store import load_results

        ds = load_results(args.dir)
        if args.metric not in ds:
            raise _usage_error("--metric", args.metric, "a variable of the results: " + ", ".join(sorted(ds.data_vars)))
        y = ds[args.metric]
        keep = {d: y[d].values[0] for d in y.dims if d in ("depth", "step")}
        y = y.sel(keep) if keep else y
        if args.budget is not None:
            if "budget" not in y.dims or args.budget not in list(y["budget"].values):
                allowed = ", ".join(map(str, y["budget"].values)) if "budget" in y.dims else "(none)"
                raise _usage_error("--budget", args.budget, f"a budget level of the results: {allowed}")
            y = y.sel(budget=args.budget)
        fixed = [d for d in y.dims if d != "seed" and y.sizes[d] < 2]
        y = y.isel({d: 0 for d in fixed}, drop=True)  # a factor held at one level switches nothing
        baseline, target, how = endpoints(y, args.baseline, args.target, args.metric)
        options.update(baseline=baseline, target=target)
        print(f"target   {_cell_text(target)}\nbaseline {_cell_text(baseline)}\n({how})\n")
        out = Path(args.out) if args.out else Path(args.dir) / "attribution"
        table = attribute_main(y, None, out, **options)
    else:
        out = Path(args.out) if args.out else Path("runs") / f"attribution-{args.game}"
        table = attribute_main(None, args.game, out, **options)
    cols = [c for c in ("method", "regime", "truth", "cells", "nl2", "kendall", "sign", "status") if c in table]
    print(table[cols].to_string(index=False))
    print(f"\nwritten: {out}/leaderboard.md, leaderboard.csv, leaderboard.png")
    return 0


def _cell_text(cell: dict) -> str:
    return ",".join(f"{f}={level}" for f, level in cell.items())


def parse_cell(text: str, levels: dict[str, list[str]], field: str) -> dict[str, str]:
    """A cell given as `factor=level,factor=level,...` naming every factor of `levels` (factors with one level
    may be left out). A level name may itself hold ',' or '=': the text is split only before `FACTOR=`."""
    import re

    from fi_sim.errors import Problem

    names = "|".join(re.escape(f) for f in sorted(levels, key=len, reverse=True))
    example = ",".join(f"{f}={ls[0]}" for f, ls in levels.items())
    parts = re.split(rf",(?=(?:{names})=)", text) if names else [text]
    cell, problems = {}, []
    for part in parts:
        factor, eq, level = part.partition("=")
        factor = factor.strip()
        if not eq:
            problems.append(Problem(field, part, f"factor=level pairs separated by commas, e.g. {example}"))
        elif factor not in levels:
            problems.append(Problem(field, factor, "a factor with two or more levels: " + ", ".join(levels)))
        elif factor in cell:
            problems.append(Problem(field, part, f"each factor once ({factor} is given twice)"))
        elif level not in levels[factor]:
            stray = re.search(r",([^,=]+)=", level)  # `...,colour=red`: an unknown factor after a known level
            if stray and level[:stray.start()] in levels[factor]:
                problems.append(Problem(field, stray.group(1), "a factor with two or more levels: " + ", ".join(levels)))
            else:
                problems.append(Problem(f"{field} {factor}", level,
                                        "a level of the results: " + ", ".join(levels[factor])))
        else:
            cell[factor] = level
    missing = [f for f in levels if f not in cell]
    if not problems and missing:
        problems.append(Problem(field, text, "a level for every factor with two or more levels; missing: "
                                + ", ".join(missing) + f" (e.g. {example})"))
    if problems:
        raise ValidationError(problems)
    return {f: cell[f] for f in levels}


def endpoints(y, baseline_text: str | None, target_text: str | None, metric: str) -> tuple[dict, dict, str]:
    """The target and baseline cells of `fi-sim attribute`: as given, else the study's largest gain as notebook 02
    defines it: the cell with the largest seed-mean `metric` against the cell with every factor at another level
    (its first level other than the target's)."""
    import numpy as np

    factors = [str(d) for d in y.dims if d != "seed"]
    levels = {f: [str(v) for v in y[f].values] for f in factors}
    target = parse_cell(target_text, levels, "--target") if target_text is not None else None
    baseline = parse_cell(baseline_text, levels, "--baseline") if baseline_text is not None else None
    how = []
    if target is None:
        mean = (y.mean("seed") if "seed" in y.dims else y).transpose(*factors).values
        if not np.isfinite(mean).any():
            raise _usage_error("--target", None, f"a cell given explicitly: no cell has a finite {metric}")
        best = np.unravel_index(int(np.nanargmax(mean)), mean.shape)
        target = {f: levels[f][i] for f, i in zip(factors, best)}
        how.append(f"target: the cell with the largest seed-mean {metric} ({float(mean[best]):+.4f})")
    if baseline is None:
        baseline = {f: next(lv for lv in levels[f] if lv != target[f]) for f in factors}
        how.append("baseline: every factor at its first level other than the target's")
    if not how:
        how.append("as given")
    return baseline, target, "; ".join(how)


# --- tables, designs and cards (issue 14): kept apart from the commands above so that they merge cleanly


def _is_table(path: str) -> bool:
    """A path ending in .csv / .parquet that is a file (not a results directory) is a table."""
    return Path(path).suffix.lower() in (".csv", ".parquet") and not Path(path).is_dir()


def _read_table(args):
    from fi_sim.attribution.ablation import from_table

    metric = args.metric
    factors = args.factors.split(",") if getattr(args, "factors", None) else None
    try:
        return from_table(args.table if hasattr(args, "table") else args.dir, metric, factors=factors)
    except ValidationError as err:
        # `attribute` defaults --metric to 'gain' (for results directories); a table without such a column
        # falls back to its own default outcome column, and says so.
        if metric == "gain" and err.problems[0].field == "metric":
            table = from_table(args.table if hasattr(args, "table") else args.dir, None, factors=factors)
            print(f"no column 'gain' in the table: attributing {table.metric!r} (choose with --metric)", file=sys.stderr)
            return table
        raise


def _assignment(text: str | None, field: str) -> dict | None:
    """'factor=level,factor=level' -> dict (levels stay strings; the table matches them by name)."""
    if not text:
        return None
    out = {}
    for part in text.split(","):
        if "=" not in part:
            raise _usage_error(field, text, "comma-separated factor=level pairs naming every factor")
        key, value = part.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def _cmd_attribute_table(args) -> int:
    from fi_sim.attribution.ablation import analyse

    table = _read_table(args)
    report = analyse(table, max_order=args.max_order, baseline=_assignment(args.baseline_cell or getattr(args, "baseline", None), "--baseline"),
                     target=_assignment(args.target_cell or getattr(args, "target", None), "--target"))
    text = report.markdown()
    print(text)
    out = Path(args.out) if args.out else Path(args.dir).with_name(Path(args.dir).stem + "_attribution")
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(text)
    report.effects.to_csv(out / "effects.csv", index=False)
    report.shapley.to_csv(out / "shapley.csv", index=False)
    print(f"written: {out}/report.md, effects.csv, shapley.csv")
    return 0


def _cmd_design(args) -> int:
    from fi_sim.attribution.design import design_next

    table = _read_table(args)
    proposal = design_next(table, args.budget, target=args.target, baseline=_assignment(args.baseline_cell, "--baseline-cell"),
                           target_cell=_assignment(args.target_cell, "--target-cell"), new_cells_only=args.new_cells_only,
                           rng_seed=args.seed)
    print(f"{len(proposal)} run(s) proposed for the {args.target} attribution of {table.metric!r} "
          f"({len(table.cells)} of {table.grid_size} cells run so far):")
    print(proposal.to_string(index=False))
    if args.out:
        proposal.to_csv(args.out, index=False)
        print(f"written: {args.out}")
    return 0


def _cmd_export(args) -> int:
    from fi_sim.tables import export

    fmt = args.format
    out = Path(args.out) if args.out else Path(args.dir) / f"results.{fmt}"
    path = export(args.dir, out, fmt, args.metrics.split(",") if args.metrics else None)
    print(f"written: {path}")
    return 0


def _cmd_card_forms(args) -> int | None:
    """`card validate FILE` and `card diff A B`; None when the arguments are a study (the original form)."""
    from fi_sim.cards import diff_cards, differing_factors, validate_card

    if args.study == "validate":
        if len(args.more) < 1:
            raise _usage_error("card validate", args.more, "one or more card JSON files")
        for path in args.more:
            validate_card(path, path)
            print(f"{path}: valid interface card")
        return 0
    if args.study == "diff":
        if len(args.more) != 2:
            raise _usage_error("card diff", args.more, "two card JSON files: A B")
        differences = diff_cards(args.more[0], args.more[1])
        if not differences:
            print("the two interfaces are identical")
            return 0
        print(f"the interfaces differ on {len(differences)} field(s); factors: {', '.join(differing_factors(differences)) or 'none'}")
        for d in differences:
            print(f"  {d}")
        return 0
    if args.more:
        raise _usage_error("card", [args.study, *args.more], "STUDY.toml, or: validate FILE..., or: diff A B")
    return None


def _usage_error(field: str, value, allowed: str) -> ValidationError:
    from fi_sim.errors import Problem

    return ValidationError(Problem(field, value, allowed))


def build_parser() -> argparse.ArgumentParser:
    from fi_sim.factors import FACTOR_NAMES

    parser = argparse.ArgumentParser(prog="fi-sim", description="Simulated attribution studies of post-training.")
    parser.add_argument("--version", action=_VersionAction, nargs=0,
                        help="print the package version and the code identity (git commit of a checkout)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("plan", help="print a study's groups, runs, chunk size, estimated memory and time")
    p.add_argument("study", help="study TOML file")
    _engine_options(p)
    p.add_argument("--calibrate", action="store_true", help="time one compiled call of each group for the estimate")
    p.set_defaults(func=_cmd_plan)

    p = sub.add_parser("run", help="run or resume a study")
    p.add_argument("study", help="study TOML file")
    p.add_argument("--out", required=True, help="results directory (created, or resumed if it holds this study)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    _engine_options(p)
    p.add_argument("--process-index", type=int, default=None,
                   help="this process's index i: it takes every P-th chunk from the i-th (with --num-processes)")
    p.add_argument("--num-processes", type=int, default=None, help="number of processes P sharing the study")
    p.add_argument("--distributed", action="store_true",
                   help="call jax.distributed.initialize() and take i, P from it (on a cluster; with "
                        "--coordinator, --num-processes and --process-index are passed to it)")
    p.add_argument("--coordinator", metavar="HOST:PORT", default=None,
                   help="with --distributed: the address of process 0's coordination service (default: from the "
                        "cluster's environment)")
    p.add_argument("--wait", type=float, default=3600.0,
                   help="seconds to wait without progress for other processes' work (default 3600)")
    p.add_argument("--no-report", action="store_true", help="skip writing report.md")
    p.add_argument("--grow", action="store_true",
                   help="DIR holds an earlier version of this study (fewer seeds or levels, another description): "
                        "grow it into this one, reusing every finished run whose identity is unchanged")
    p.add_argument("--allow-mixed-code", action="store_true",
                   help="resume DIR although another code version (fi_sim.code_identity()) started it; every "
                        "identity that contributed is recorded in the manifest and the results")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("merge", help="assemble DIR/results.nc from the chunks of a split study")
    p.add_argument("dir")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--no-report", action="store_true", help="skip writing report.md")
    p.set_defaults(func=_cmd_merge)

    p = sub.add_parser("report", help="write DIR/report.md with figures")
    p.add_argument("dir")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("card", help="print the interface cards of a study; or: card validate FILE, card diff A B")
    p.add_argument("study", help="study TOML file, or 'validate' / 'diff'")
    p.add_argument("more", nargs="*", help="validate: card JSON files; diff: two card JSON files")
    p.add_argument("--summary", action="store_true", help="one line per card: hash and levels")
    p.set_defaults(func=_cmd_card)

    p = sub.add_parser("levels", help="print the catalogue of factor levels")
    p.add_argument("factor", nargs="?", choices=FACTOR_NAMES)
    how = p.add_mutually_exclusive_group()
    how.add_argument("--full", action="store_true", help="every level's parameters, defaults and allowed values")
    how.add_argument("--json", action="store_true", help="the full catalogue as JSON")
    p.set_defaults(func=_cmd_levels)

    p = sub.add_parser("attribute", help="leaderboard of attribution methods against the exact truth")
    p.add_argument("dir", nargs="?", help="a results directory")
    p.add_argument("--game", help="an analytic game instead of results (see fi_sim.attribution.games.GAMES)")
    p.add_argument("--metric", default="gain", help="results variable to attribute (default: gain)")
    p.add_argument("--budget", help="budget level to attribute (default: keep budget as a factor)")
    p.add_argument("--target", metavar="CELL", help="the cell whose gain over the baseline is attributed, as "
                   "factor=level,... for every factor with two or more levels (default: the cell with the "
                   "largest seed-mean metric)")
    p.add_argument("--baseline", metavar="CELL", help="the reference cell, same syntax (default: every factor at "
                   "its first level other than the target's)")
    p.add_argument("--regimes", help="comma-separated regime names (default: the standard set)")
    p.add_argument("--seed", type=int, default=0, help="seed of the methods' random choices")
    p.add_argument("--out", help="output directory (default: DIR/attribution or runs/attribution-GAME)")
    _table_options(p)
    p.set_defaults(func=_cmd_attribute)

    p = sub.add_parser("design", help="design the next runs of an ablation table: fi-sim design next TABLE --budget N")
    p.add_argument("action", choices=["next"])
    p.add_argument("table", help="a long table (.csv or .parquet): one column per factor, a metric, optionally seed")
    p.add_argument("--budget", type=_positive, required=True, help="runs to propose (one seed each)")
    p.add_argument("--target", choices=["shapley", "sobol"], default="shapley",
                   help="the attribution to sharpen: Shapley values of the baseline->target switch, or Sobol indices")
    p.add_argument("--metric", default=None, help="outcome column (default: true:gain, else the only float column)")
    p.add_argument("--factors", help="comma-separated factor columns (default: inferred)")
    p.add_argument("--baseline-cell", help="factor=level,... (default: first level of every factor)")
    p.add_argument("--target-cell", help="factor=level,... (default: last level of every factor)")
    p.add_argument("--new-cells-only", action="store_true", help="propose only cells not yet run (no further seeds)")
    p.add_argument("--seed", type=int, default=0, help="seed of the posterior draws (Sobol target)")
    p.add_argument("--out", help="write the proposal as CSV here")
    p.set_defaults(func=_cmd_design)

    p = sub.add_parser("export", help="write a results directory as a table: one row per run and budget")
    p.add_argument("dir", help="a results directory")
    p.add_argument("--format", choices=["csv", "parquet"], default="csv")
    p.add_argument("--out", help="output file (default: DIR/results.csv or DIR/results.parquet)")
    p.add_argument("--metrics", help="comma-separated variables to export (default: every scalar metric)")
    p.set_defaults(func=_cmd_export)
    return parser


def _table_options(p) -> None:
    """Options of `fi-sim attribute TABLE.csv` (a path ending in .csv / .parquet)."""
    p.add_argument("--factors", help="table: comma-separated factor columns (default: inferred)")
    p.add_argument("--max-order", type=_positive, default=2, help="table: interactions shown up to this order (default 2)")
    p.add_argument("--baseline-cell", help="table: factor=level,... of the switch's baseline (default: first levels)")
    p.add_argument("--target-cell", help="table: factor=level,... of the switch's target (default: last levels)")


def _engine_options(p) -> None:
    p.add_argument("--chunk-size", type=_positive, default=None,
                   help="runs per chunk (default: the study's, else one device batch per device)")
    p.add_argument("--device-batch", type=_positive, default=None,
                   help="runs computed at once per device (default: the study's, else from a memory bound)")
    p.add_argument("--devices", type=_positive, default=None, help="use the first N local devices (default: all)")
    p.add_argument("--cpu-devices", type=_positive, default=None,
                   help=f"host CPU devices to create (default: ${CPU_DEVICES_ENV}, else one per core up to the study's CPU parallelism)")
    p.add_argument("--no-cache", action="store_true", help="do not use the persistent compilation cache")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not >= 1")
    return value


from fi_sim.engine.hostcpu import CPU_DEVICES_ENV  # noqa: E402


def configure_host_devices(count: int | None = None, parallelism: int | None = None) -> None:
    """Before JAX starts: the study's CPU parallelism (NPROC) and one JAX device per core up to it, so a study's
    runs are sharded over the cores like over several accelerators with bits that depend on neither (see
    `fi_sim.engine.hostcpu`). An explicit XLA_FLAGS device count is left alone (and checked before computing)."""
    from fi_sim.engine import hostcpu

    hostcpu.configure(parallelism or hostcpu.DEFAULT_CPU_PARALLELISM, count)


def _study_parallelism(args) -> int | None:
    """The CPU parallelism of the study a command computes (None: the default; a bad file is reported later)."""
    path = getattr(args, "study", None)
    if path is None:
        return None
    try:
        from fi_sim.study import load_study

        return load_study(path).engine.parallelism
    except Exception:  # the command itself loads the study again and reports what is wrong with it
        return None


def git_commit_of_source() -> str | None:
    """The git commit of the package's source when it is a git checkout ('+dirty' when the package's files differ
    from it), else None (an installed copy: the version says what it is)."""
    import os
    import subprocess

    src = Path(__file__).resolve().parent
    try:
        git: dict[str, Any] = dict(cwd=src, capture_output=True, text=True, timeout=5)
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], **git)
        if top.returncode != 0 or not src.is_relative_to(Path(top.stdout.strip()).resolve()):
            return None
        commit = subprocess.run(["git", "rev-parse", "HEAD"], **git)
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", os.fspath(src)], **git)
        return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def version_text() -> str:
    """`fi-sim VERSION (git COMMIT)` in a checkout, `fi-sim VERSION (installed)` otherwise; where the package
    defines `code_provenance()` (version + a hash of its source), that identity is printed too."""
    import fi_sim

    provenance = getattr(fi_sim, "code_provenance", None)
    identity = provenance()["id"] if callable(provenance) else None
    commit = git_commit_of_source()
    text = f"fi-sim {fi_sim.__version__}" + (f" (git {commit})" if commit else " (installed)")
    return text + (f"; code {identity}" if identity and identity != fi_sim.__version__ else "")


class _VersionAction(argparse.Action):
    """--version, computed only when asked for (it runs git)."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_text())
        parser.exit()


def _quiet_broken_pipe() -> int:
    """The reader of stdout went away (`fi-sim levels | head`): drop what is left, exit as SIGPIPE would."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's last flush at exit goes nowhere, quietly
    except (OSError, ValueError):
        pass
    return 141


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except BrokenPipeError:  # `fi-sim --help | head`
        return _quiet_broken_pipe()
    try:
        if hasattr(args, "cpu_devices"):
            configure_host_devices(args.cpu_devices, _study_parallelism(args))
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not in the interpreter's exit
        return code
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except ValidationError as err:
        if len(err.problems) == 1:
            print(f"fi-sim: error: {err}", file=sys.stderr)
        else:
            print(f"fi-sim: error: {len(err.problems)} problems:", file=sys.stderr)
            for p in err.problems:
                print(f"  {p}", file=sys.stderr)
        return 2
    except FiSimError as err:
        print(f"fi-sim: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fi-sim: interrupted; finished chunks are saved, run the same command again to resume",
              file=sys.stderr)
        import threading

        if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.current_thread()):
            # a computation left running by a second Ctrl-C would hold the interpreter's exit until it ends;
            # everything finished is already on disk (written atomically), so leave now
            import os

            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(130)
        return 130
    except OSError as err:
        from fi_sim.engine.store import DISK_ERRNOS, storage_error

        if err.errno not in DISK_ERRNOS:
            raise
        print(f"fi-sim: error: {storage_error(err.filename or '?', err)}", file=sys.stderr)  # e.g. the report
        return 2


if __name__ == "__main__":
    sys.exit(main())
