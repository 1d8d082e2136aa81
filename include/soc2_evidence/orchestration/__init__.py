"""The Airflow edge, and the only package that imports ``airflow``: tasks, connections, alerts and tags.

``pipeline`` holds the nightly steps as plain functions that tests and the CLI call directly.
"""
