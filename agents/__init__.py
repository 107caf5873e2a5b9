"""Agents for offload_gym: policies (built-in heuristics, trained SB3 models) and the evaluation harness.

``agents.evaluation`` runs any policy over held-out seeds with common random numbers and summarises
the paper's metrics; ``evaluate.py`` is its command line.
"""
