"""The paper's experiments as commands: `glassgem experiment list | run NAME|PLAN.toml --out DIR`.

plan.py reads the TOML plans (plans/*.toml) and budgets, datasets.py resolves or generates their data,
execute.py trains and scores the runs (resumable), results.py writes results.csv/.md/.png.
"""

from .plan import BUDGETS, Plan, list_plans, load_plan

__all__ = ["BUDGETS", "Plan", "list_plans", "load_plan"]
