"""The evidence model every layer shares: typed config, canonical JSON, hashing, redaction, staging, errors.

Imports nothing above it: no store, no validation, no collector, no Airflow.
"""
