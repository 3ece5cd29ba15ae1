"""`lmbench report`: run records -> report.md and a self-contained report.html.

What a reader needs first comes first: findings computed from the data
(lmbench/report/findings.py), then per preset and mode a headline table with human
headers and units (lmbench/report/table.py; sortable in the HTML), the details in a
collapsible section, plots in one style (lmbench/report/plots.py), perplexity against
the published figures, history over commits where the results hold it, the environment,
and the runs that failed or were skipped. Both files come from the same blocks
(lmbench/report/render.py).
"""
