"""Presentation: the only layer that formats tables and documents. It reads DataFrames (the
store's runs, harness.stats' summaries) and never builds models.

One module per output, each building a `formats.Document`: results.py (`harness table`),
compare.py, plan.py, bench.py, show.py; check.py compares a committed results file with a store.
formats.py holds the one registry of formats (markdown, text, LaTeX, HTML, CSV, JSON) that
every command's `--format` choices come from.
"""
