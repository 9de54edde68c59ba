"""`glassgem experiment list | run`: the paper's Tables 2-4 as plans of training runs (glassgem.experiments)."""

from __future__ import annotations

import argparse

from .common import _add_group


def _add_experiment(sub: argparse._SubParsersAction) -> None:
    _add_group(
        sub,
        "experiment",
        "run the paper's experiments (Tables 2-4) from plans: pretrain, fine-tune, score",
        (_add_experiment_list, _add_experiment_run),
    )


def _add_experiment_list(group_sub: argparse._SubParsersAction) -> None:
    p = group_sub.add_parser("list", help="list the shipped plans and the budgets")
    p.set_defaults(func=_run_experiment_list)


def _run_experiment_list(args: argparse.Namespace) -> int:
    from ..experiments.plan import BUDGETS, list_plans, load_plan

    for name, title in list_plans():
        plan = load_plan(name)
        print(f"{name:16s} {title} ({len(plan.runs)} runs; data: {', '.join(plan.data)})")
    print("\nbudgets (--budget):")
    for b in BUDGETS.values():
        print(f"  {b.name:6s} {b.about}")
    return 0


def _add_experiment_run(group_sub: argparse._SubParsersAction) -> None:
    p = group_sub.add_parser(
        "run",
        help="run a plan's runs one after another (resumable) and write results.csv/.md/.png",
        description="Run every run of a plan (pretrain, fine-tune, score on the plan's eval set) into --out. "
        "Finished stages are skipped and an interrupted one resumes, so the same command continues a run. "
        "Data sets not given with --set data.NAME=DIR are generated procedurally (and the results say so).",
    )
    p.add_argument("plan", metavar="NAME|PLAN.toml", help="a shipped plan (glassgem experiment list) or a TOML file")
    p.add_argument("--out", required=True, metavar="DIR", help="experiment folder (runs/, data/, results.*)")
    p.add_argument("--budget", default="smoke", help="smoke (default), cpu or paper")
    p.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="data.NAME=DIR (a data set of the plan), budget.FIELD=VALUE (e.g. budget.pretrain_steps=50), "
        "or a training config field for every run (e.g. encoder_weights=mobile_sam.pt)",
    )
    p.add_argument("--only", nargs="*", default=None, metavar="RUN", help="run only these runs of the plan")
    p.add_argument(
        "--print",
        action="store_true",
        dest="print_only",
        help="print one command per run (e.g. cluster jobs) and the one that collects the results",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_run_experiment_run)


def _run_experiment_run(args: argparse.Namespace) -> int:
    from ..experiments.execute import print_commands, run_plan
    from ..experiments.plan import load_plan

    plan = load_plan(args.plan)
    if args.print_only:
        print("\n".join(print_commands(args.plan, plan, args.out, args.budget, args.set)))
        return 0
    run_plan(plan, args.out, args.budget, args.set, only=args.only, progress=not args.quiet)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `experiment` command group (list, run)."""
    _add_experiment(sub)
