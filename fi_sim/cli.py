"""The `fi-sim` command line.

    fi-sim plan STUDY.toml               print the groups, runs, chunk size, estimated memory and time
    fi-sim run STUDY.toml --out DIR      run (or resume) a study; writes DIR/results.nc and DIR/report.md
                                         (--process-index i --num-processes P: this process's share only)
    fi-sim merge DIR                     assemble DIR/results.nc once every share of a split study is done
    fi-sim report DIR                    (re)write DIR/report.md with figures
    fi-sim card STUDY.toml               print the interface card of every cell of a study
    fi-sim levels                        print the catalogue of factor levels
    fi-sim attribute DIR | --game NAME   score attribution methods against the truth (leaderboard)

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

    p = sub.add_parser("card", help="print the interface cards of a study")
    p.add_argument("study")
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
    p.set_defaults(func=_cmd_attribute)
    return parser


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
