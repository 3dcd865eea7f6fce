"""The `fi-sim` command line.

    fi-sim run STUDY.toml --out DIR      run (or resume) a study; writes DIR/results.nc and DIR/report.md
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
    run_study(study, args.out, study_text=Path(args.study).read_text(), quiet=args.quiet,
              chunk_size=args.chunk_size)
    if not args.no_report:
        from fi_sim.report import write_report

        path = write_report(args.out)
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

    p = sub.add_parser("run", help="run or resume a study")
    p.add_argument("study", help="study TOML file")
    p.add_argument("--out", required=True, help="results directory (created, or resumed if it holds this study)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--chunk-size", type=int, default=None, help="runs per compiled call (default: the study's)")
    p.add_argument("--no-report", action="store_true", help="skip writing report.md")
    p.set_defaults(func=_cmd_run)

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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
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
