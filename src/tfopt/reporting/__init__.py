"""Reporting stage: summary.json, the HTML / Markdown report and the model card."""
