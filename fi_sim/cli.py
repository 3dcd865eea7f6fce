"""The `fi-sim` command line.

    fi-sim plan STUDY.toml               print the groups, runs, chunk size, estimated memory and time
    fi-sim run STUDY.toml --out DIR      run (or resume) a study; writes DIR/results.nc and DIR/report.md
                                         (--process-index i --num-processes P: this process's share only)
    fi-sim merge DIR                     assemble DIR/results.nc once every share of a split study is done
    fi-sim report DIR                    (re)write DIR/report.md with figures
    fi-sim card STUDY.toml               print the interface card of every cell of a study
    fi-sim levels                        print the catalogue of factor levels
    fi-sim attribute DIR | --game NAME   score attribution methods against the truth (leaderboard)
    fi-sim attribute TABLE.csv --metric COL   what a real ablation table supports: aliases, estimates, claims
    fi-sim design next TABLE.csv --budget N   the N runs that would most sharpen the attribution
    fi-sim export DIR --format csv|parquet    the results as a table: one row per run and budget
    fi-sim card validate FILE | card diff A B check a hand-written card against the schema; compare two

Bad input prints one line per problem (field, value given, what is allowed) without a traceback and exits
with status 2; nothing already computed is lost.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fi_sim.errors import FiSimError, ValidationError


def _cmd_run(args) -> int:
    from fi_sim.engine.runner import run_study
    from fi_sim.study import load_study

    study = load_study(args.study)
    index, count = args.process_index, args.num_processes
    if args.distributed:
        import jax

        jax.distributed.initialize()
        index, count = None, None  # run_study takes them from jax.distributed (engine.runner.process_layout)
    elif (index is None) != (count is None):
        raise _usage_error("--process-index/--num-processes", f"{index}/{count}", "both or neither")
    ds = run_study(study, args.out, study_text=Path(args.study).read_text(), quiet=args.quiet,
                   chunk_size=args.chunk_size, device_batch=args.device_batch, process_index=index,
                   num_processes=count, devices=args.devices, use_cache=not args.no_cache,
                   wait_seconds=args.wait)
    if ds is not None and not args.no_report:
        from fi_sim.report import write_report

        path = write_report(args.out)
        if not args.quiet:
            print(f"report: {path}", file=sys.stderr)
    return 0


def _cmd_plan(args) -> int:
    from fi_sim.engine import cache, execute, sizing
    from fi_sim.study import load_study

    study = load_study(args.study)
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
                raise _usage_error("--budget", args.budget, "a budget level of the results")
            y = y.sel(budget=args.budget)
        out = Path(args.out) if args.out else Path(args.dir) / "attribution"
        table = attribute_main(y, None, out, **options)
    else:
        out = Path(args.out) if args.out else Path("runs") / f"attribution-{args.game}"
        table = attribute_main(None, args.game, out, **options)
    cols = [c for c in ("method", "regime", "truth", "cells", "nl2", "kendall", "sign", "status") if c in table]
    print(table[cols].to_string(index=False))
    print(f"\nwritten: {out}/leaderboard.md, leaderboard.csv, leaderboard.png")
    return 0


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
    report = analyse(table, max_order=args.max_order, baseline=_assignment(args.baseline_cell, "--baseline-cell"),
                     target=_assignment(args.target_cell, "--target-cell"))
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
                   help="call jax.distributed.initialize() and take i, P from it (on a cluster)")
    p.add_argument("--wait", type=float, default=3600.0,
                   help="seconds to wait without progress for other processes' work (default 3600)")
    p.add_argument("--no-report", action="store_true", help="skip writing report.md")
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
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_levels)

    p = sub.add_parser("attribute", help="leaderboard of attribution methods against the exact truth")
    p.add_argument("dir", nargs="?", help="a results directory")
    p.add_argument("--game", help="an analytic game instead of results (see fi_sim.attribution.games.GAMES)")
    p.add_argument("--metric", default="gain", help="results variable to attribute (default: gain)")
    p.add_argument("--budget", help="budget level to attribute (default: keep budget as a factor)")
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
                   help=f"host CPU devices to create (default: ${CPU_DEVICES_ENV}, else one per core)")
    p.add_argument("--no-cache", action="store_true", help="do not use the persistent compilation cache")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not >= 1")
    return value


CPU_DEVICES_ENV = "FI_SIM_CPU_DEVICES"


def configure_host_devices(count: int | None = None) -> None:
    """Split the host CPU into one JAX device per core (before JAX starts), so a study's runs are sharded over
    every core like over several accelerators. Leaves an explicit XLA_FLAGS setting alone."""
    import os

    if "jax" in sys.modules and "jax._src.xla_bridge" in sys.modules:
        from jax._src import xla_bridge

        if xla_bridge.backends_are_initialized():
            return
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" in flags:
        return
    if count is None:
        env = os.environ.get(CPU_DEVICES_ENV)
        if env:
            try:
                count = int(env)
            except ValueError:
                raise _usage_error(CPU_DEVICES_ENV, env, "a positive integer") from None
        else:
            count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if count > 1:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if hasattr(args, "cpu_devices"):
            configure_host_devices(args.cpu_devices)
        return args.func(args)
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
        return 130


if __name__ == "__main__":
    sys.exit(main())
