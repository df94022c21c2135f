"""The verification harness: sweeps, claims and verdicts, fits, plots, report and CI check.

Imports flow one way: kernels → core (graph, matrices, sketch) → decoders → learning → harness →
CLI. Nothing outside ``sketchsim.harness`` and ``sketchsim.cli`` imports from here, and the harness
names no experiment: studies are discovered in the ``experiments`` package.
"""
