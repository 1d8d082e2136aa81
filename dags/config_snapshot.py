"""
### Configuration snapshot evidence (nightly)

Snapshots each configured configuration source (config repositories: files at a git ref,
secrets redacted), validates the snapshot, and archives it to the immutable evidence store
with a hash-chained manifest. SOC 2: CC6.1, CC7.2, CC8.1.

**Steps**: `list_sources` → `extract` (mapped, one per source; retried with backoff) →
`validate_and_archive.validate` → `validate_and_archive.archive` (writes the manifest last).

### Runbook (on-call)
- **`extract [<source>]` failed**: the map index names the source. Read the last log line:
  it names the source and what was wrong (unreadable repository, bad ref, denied access).
  Fix the source or its Airflow Connection, then *Clear* the failed `extract` instance and
  its downstream `validate_and_archive` tasks. Extraction is safe to repeat: every try
  stages afresh and nothing reaches the store before `archive`.
- **`archive` failed with "run archived as FAILED"**: the evidence *is* archived, marked
  failed in its manifest (the error gives the manifest key). Fix the cause, then clear the
  DAG run: the re-run writes a new `attempt-NNN` folder; nothing is overwritten.
- **`archive` failed with "bucket ...: Object Lock is not enabled"** (or versioning): the
  store failed closed. The bucket must be created with Object Lock; it cannot be added later
  on every provider. Nothing was written.
- **Check the archive** at any time: `evidence verify --store $EVIDENCE_STORE`.

Params: `sources` limits a manual run to some sources (default: all configured).
"""

from __future__ import annotations

from airflow.sdk import dag

from soc2_evidence.orchestration.tasks import (
    dag_schedule,
    extract,
    list_sources,
    nightly_dag_settings,
    sources_param,
    validate_and_archive,
)

FAMILY = "config"


@dag(
    dag_id="evidence_config_snapshot",
    schedule=dag_schedule("config_snapshot"),
    doc_md=__doc__,
    params={"sources": sources_param()},
    **nightly_dag_settings(FAMILY),
)
def evidence_config_snapshot():
    validate_and_archive(FAMILY, extract.expand(source_name=list_sources(FAMILY)))


evidence_config_snapshot()
