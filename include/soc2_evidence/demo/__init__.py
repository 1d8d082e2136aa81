"""``make demo``: the nightly pipeline on embedded services (moto S3, embedded PostgreSQL, SQLite Airflow).

Not part of what an auditor needs: nothing outside ``demo`` imports it, except the tests and benches.
"""
