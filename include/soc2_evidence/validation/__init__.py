"""Judging what was collected: GX suites, the control map, accepted exceptions, calendar and drift.

Validation never fetches: it reads staged bundles and what the store already holds.
"""
