"""
### Ticket evidence: changes, access reviews and incidents (nightly; full population monthly)

Collects the change, access-review and incident populations from Jira (Cloud or Data Center),
GitHub (merged pull requests with reviews, checks and deployments) and ticket export files,
normalised to one schema per population; validates completeness (count equals the API's total,
no duplicate ids, no page missing) and the change controls (independent approval before merge,
a linked ticket, emergency changes reviewed in time, required checks passed), which become
findings; archives everything with a hash-chained manifest. SOC 2: CC6.2, CC6.3, CC7.3-CC7.5, CC8.1.

**Nightly** runs collect what changed since the source's watermark (the window end of its last
run that was archived and passed); the watermark advances only once the archive commits.
**Full population**: on the 1st of each month, the previous month; on demand with the
`full_population` param and an optional `period_start`/`period_end` (dates, end exclusive).

**Steps**: `list_sources` → `extract` (mapped, one per source; retried with backoff) →
`validate_and_archive.validate` → `validate_and_archive.archive` (writes the manifest last).

### Runbook (on-call)
- **`extract [<source>]` failed**: the map index names the source; the last log line names the
  source, the call and the page, and what was wrong:
  - *HTTP 401 ... invalid or expired*: renew the API token / PAT / GitHub token in the Airflow
    Connection the message names, then *Clear* the failed `extract` and its downstream tasks.
  - *rate limited ... longer than the ... s this task waits*: the API's limit resets later; the
    task's own retry resumes, or clear it after the reset time.
  - *a page is missing*, *pagination loop*, *repeats an earlier page*, *total changed while
    paging*: the API's listing moved or misbehaved during the run; clear the task to retry. If it
    persists, lower `page_size` or open a ticket with the vendor with the quoted page.
  - *gave up after N tries* (HTTP 5xx, timeouts, truncated or malformed bodies): the API is
    unhealthy; retry once it recovers.
  Nothing from a failed extraction is archived as complete, and the watermark does not move:
  the next run collects the missed window.
- **`archive` failed with "run archived as FAILED"** and a `*.completeness` failure: the number
  of records differs from the total the API reported (e.g. tickets changed mid-run, or GitHub's
  search index lagged). Clear the DAG run; the re-run writes a new attempt.
- **Findings** (`*.approved_before_merge`, `*.ticket_linked`, `*.emergency_reviewed_in_time`,
  `*.required_checks_succeeded`) are control exceptions, not failures: route them to compliance;
  accepted ones go to `include/config/exceptions.yaml`.
- **Check the archive** at any time: `evidence verify --store $EVIDENCE_STORE`.

Params: `sources` limits a run to some sources; `full_population`, `period_start`, `period_end`.
"""

from __future__ import annotations

from airflow.sdk import Param, dag

from soc2_evidence.orchestration.tasks import (
    dag_schedule,
    extract,
    list_sources,
    nightly_dag_settings,
    sources_param,
    validate_and_archive,
)

FAMILY = "tickets"


@dag(
    dag_id="evidence_tickets",
    schedule=dag_schedule("tickets"),
    doc_md=__doc__,
    params={
        "sources": sources_param(),
        "full_population": Param(
            False, type="boolean", description="Collect the full population of a period instead of what changed"
        ),
        "period_start": Param(
            None, type=["null", "string"], format="date", description="Full population from this date (inclusive)"
        ),
        "period_end": Param(
            None, type=["null", "string"], format="date", description="Full population to this date (exclusive)"
        ),
    },
    **nightly_dag_settings(FAMILY),
)
def evidence_tickets():
    validate_and_archive(FAMILY, extract.expand(source_name=list_sources(FAMILY)))


evidence_tickets()
