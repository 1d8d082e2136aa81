"""
### Backup-test evidence (nightly)

Restores the newest backup of each configured database into a scratch database, verifies it
(schema against the source, row counts and checksums against the backup's manifest, smoke
queries) and measures RTO and RPO against their targets (`pg_restore` sources). Beside that:
AWS Backup and RDS backup evidence (`aws_backup`) and results of other backup tools
(`backup_results`). Validated and archived to the immutable evidence store with a hash-chained
manifest. SOC 2: A1.2 (backups), A1.3 (recovery testing).

**Steps**: `list_sources` → `extract` (mapped, one per source, in the `evidence_restores` pool,
up to 6 hours each; retried with backoff) → `validate_and_archive.validate` →
`validate_and_archive.archive` (writes the manifest last).

**Pool**: at most N restores run at once. Create the pool before the first run:
`airflow pools set evidence_restores N "Concurrent restore tests"` (N = 1 or 2 for a shared
scratch server). Every source of this DAG takes one slot while it runs.

### Runbook (on-call)
- **A restore test FAILED** (finding `pg_restore.results.restore_succeeded`, the run itself
  succeeds): the backup did not restore, or did not match. Open the run's `restore.log` and
  `results.jsonl` in the archive (manifest key in the `archive` task's log). By failed check:
  - `backup_found`: no finished dump (one with its `.manifest.json`) at the location: the backup
    job is not running, writes elsewhere, or dies before its manifest (the detail names unfinished
    dumps). Treat as a missed backup (RPO breached): escalate to the database owner now.
  - `backup_intact` (sha256 differs, or the manifest is unusable): the dump is truncated, corrupted
    or not written by the backup task; check the backup job's last run and the bucket's object history.
  - `backup_of_source`: the dump is of another server or database (the detail says which): the
    backup job's target or path is wrong. Nothing is restored and no content check passes.
  - `rpo_measured_from` failed: no finished backup passed integrity: the RPO is missed. When it
    passes after a broken newest dump, it names the older backup the RPO was measured from.
  - `restore_completed` failed or killed: read the `pg_restore:` error lines in `restore.log`
    (missing role or extension on the scratch server, disk full, version mismatch; plain SQL and
    directory-format dumps are refused). A killed or timed-out restore needs a bigger scratch
    server or a longer `timeout_minutes`.
  - `schema_matches_backup`, `row_counts_match`, `checksums_match`, `large_objects_match`,
    `sequences_match`: the restore does not hold what the manifest recorded at backup time;
    `restore.log` lists each difference. The backup job is broken (or dumps a subset).
  - `rows_match_source`, `checksums_match_source`: the backup does not hold the source's data,
    beyond the changes the source's statistics counted since the backup (`schema_since_backup`
    reports schema changes since; they are not failures).
  - `smoke:<name>`: the restored data fails an application check; involve the database owner.
  After a fix, *Clear* the source's `extract` and the `validate_and_archive` tasks: a new test runs.
- **RTO or RPO over target** (findings `rto_within_target`, `rpo_within_target`): the restore
  was correct but too slow, or the newest backup too old. Raise with the owner of the recovery
  plan; do not re-run to make the finding disappear.
- **`extract [<source>]` failed** (error, not a finding): bad options, an unreachable source or
  scratch server, or no access to the backup bucket; the last log line names the source. Fix,
  then clear it. A scratch database is dropped however a test ends: by the test, by a guard
  process if the task is killed, and by the next run (name prefix `soc2_restore_`) after a crash.
- **`archive` failed with "run archived as FAILED"**: see the config snapshot DAG's runbook;
  the evidence is archived, marked failed, and a re-run writes a new attempt.

Params: `sources` limits a manual run to some sources (default: all configured).
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag

from soc2_evidence.orchestration.tasks import (
    dag_schedule,
    extract,
    list_sources,
    nightly_dag_settings,
    sources_param,
    validate_and_archive,
)

FAMILY = "backup"
RESTORE_POOL = "evidence_restores"
RESTORE_TIMEOUT = timedelta(hours=6)


@dag(
    dag_id="evidence_backup_test",
    schedule=dag_schedule("backup_test"),
    doc_md=__doc__,
    params={"sources": sources_param()},
    **nightly_dag_settings(FAMILY),
)
def evidence_backup_test():
    restores = extract.override(pool=RESTORE_POOL, execution_timeout=RESTORE_TIMEOUT)
    validate_and_archive(FAMILY, restores.expand(source_name=list_sources(FAMILY)))


evidence_backup_test()
