"""Plain helper functions shared by test modules (no fixtures: those live in conftest.py).

``tests/`` is on ``sys.path`` (``pythonpath`` in setup.cfg's ``[tool:pytest]``), so a test
imports these as ``from helpers.compression import trained_cnn``.
"""
