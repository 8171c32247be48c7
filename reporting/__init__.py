"""Reports, figures and exports built from a results tree (``training/results.py`` layout).

``report.py`` and ``export.py`` are the command lines; this package holds their logic so that
tests can drive it without subprocesses.
"""
