"""Evaluation: YouTube-VIS temporal mask AP/AR identical to the official toolkit (never imports torch).

Example::

    from streamvis.evaluation import evaluate, format_table
    result = evaluate("valid.json", "results.json")
    print(format_table(result, gt["categories"], per_class=True))
"""

from streamvis.evaluation.report import format_table
from streamvis.evaluation.ytvis_eval import EvalParams, EvalResult, evaluate, evaluate_tables

__all__ = ["EvalParams", "EvalResult", "evaluate", "evaluate_tables", "format_table"]
