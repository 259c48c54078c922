"""Evaluation stage: model runtimes, the evaluation of every candidate, the variant registry and
selection.
"""
