"""glassgem.evaluation: the GSD-S metrics (metrics.py), mask folders (mask_eval.py), models on datasets
(evaluate.py), per-image reports (report.py) and paired comparisons of two reports (compare.py)."""
