"""Archive one run: store every staged item, then commit the run with its manifest.

Order is the guarantee. Items are written first, each under a key never used before;
only when every item is durably stored is the manifest written, hash-chained to the
previous manifest of the same DAG. A run without a manifest is incomplete by definition.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from soc2_evidence import __version__
from soc2_evidence.archive.layout import (
    MANIFEST_NAME,
    attempt_number,
    attempt_prefix,
    chain_key,
    chain_prefix,
    run_prefix,
)
from soc2_evidence.archive.stores.base import EvidenceStore, StoredObject
from soc2_evidence.core.errors import ArchiveError, ObjectExistsError
from soc2_evidence.core.evidence import (
    RunContext,
    canonical_json,
    code_revision,
    parse_rfc3339,
    retain_until,
    rfc3339,
    utc_now,
)
from soc2_evidence.core.hashing import digest_bytes
from soc2_evidence.core.staging import Bundle, StagedItem

log = logging.getLogger(__name__)

MANIFEST_SCHEMA = "soc2-evidence/manifest/v1"
UPLOAD_THREADS = 8
COMMIT_TRIES = 5


@dataclass(frozen=True)
class SourceOutcome:
    """What happened to one configured source in this run."""

    name: str
    kind: str
    status: str  # "archived" or "extraction_failed"
    error: str | None = None


@dataclass(frozen=True)
class ArchivedRun:
    manifest_key: str
    manifest_sha256: str
    attempt: int
    sequence: int
    outcome: str
    manifest: dict[str, Any]


def archive_run(
    store: EvidenceStore,
    *,
    family: str,
    run: RunContext,
    bundles: list[Bundle],
    sources: list[SourceOutcome],
    retention_days: int,
    item_status: dict[tuple[str, str], str] | None = None,
    validation: dict[str, Any] | None = None,
    now: Callable[[], datetime] = utc_now,
) -> ArchivedRun:
    """Store every bundle's items and commit the run; return where the manifest landed.

    ``item_status`` maps (source, name) to ``passed``/``failed``; items not in it are
    ``not_validated``. ``validation`` is the validation summary (None: validation did not run).
    A failed source, a failed item or a validation that did not pass makes the run's outcome
    ``failed``, but everything that was collected is still archived. ``now`` gives the manifest's
    ``committed_at`` (and so the retain-until date of the manifest and its chain link).
    """
    store.check_writable(retention_days)
    item_status = item_status or {}
    attempt = next_attempt(store, family, run)
    folder = attempt_prefix(family, run, attempt)

    staged = [staged for bundle in bundles for staged in bundle.items]
    with ThreadPoolExecutor(max_workers=UPLOAD_THREADS) as pool:
        stored = list(pool.map(lambda staged_item: _store_item(store, folder, staged_item, retention_days), staged))

    entries = []
    for staged_item, stored_object in zip(staged, stored, strict=True):
        item = staged_item.item
        entry = item.to_dict()
        entry.update(
            key=stored_object.key,
            version_id=stored_object.version_id,
            copies=list(stored_object.copies) or [{"store": store.url, "version_id": stored_object.version_id}],
            retain_until=rfc3339(retain_until(parse_rfc3339(item.collected_at), retention_days)),
            validation=item_status.get((item.source, item.name), "not_validated"),
        )
        entries.append(entry)

    failed_sources = [source.name for source in sources if source.status != "archived"]
    failed_items = [entry["key"] for entry in entries if entry["validation"] == "failed"]
    validated = validation is not None and validation.get("status") == "passed"
    outcome = "passed" if validated and not failed_sources and not failed_items else "failed"
    body = {
        "schema": MANIFEST_SCHEMA,
        "family": family,
        "run": run.to_dict(),
        "attempt": attempt,
        "store": {"url": store.url, "immutable": store.immutable, "retention_days": retention_days},
        "tool": {"name": "soc2-evidence", "version": __version__, "code_revision": code_revision()},
        "sources": [
            {
                **source.__dict__,
                "redactions": _bundle_of(bundles, source.name).redactions if source.status == "archived" else {},
            }
            for source in sources
        ],
        "items": entries,
        "validation": validation or {"status": "not_run"},
        "controls": (validation or {}).get("controls", []),
        "outcome": outcome,
        "failures": {"sources": failed_sources, "items": failed_items},
    }
    return _commit(store, run, folder, attempt, body, retention_days, now)


def next_attempt(store: EvidenceStore, family: str, run: RunContext) -> int:
    """One more than any attempt already in the store for this run, finished or not."""
    prefix = run_prefix(family, run) + "/"
    attempts = [attempt_number(info.key[len(prefix) :].split("/", 1)[0]) for info in store.list_objects(prefix)]
    return max((number for number in attempts if number is not None), default=0) + 1


def latest_link(store: EvidenceStore, dag_id: str) -> dict[str, Any] | None:
    """The newest chain link of a DAG, or None before its first committed run."""
    last = None
    for info in store.list_objects(chain_prefix(dag_id)):
        last = info.key
    return json.loads(store.read_bytes(last)) if last else None


def committed_manifests(store: EvidenceStore, dag_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """The DAG's committed manifests, newest first, each found through the ``previous`` of the one after it."""
    link = latest_link(store, dag_id)
    key = link["manifest_key"] if link else None
    while key:
        manifest = json.loads(store.read_bytes(key))
        yield key, manifest
        key = (manifest.get("previous") or {}).get("key")


def passed_items(manifest: dict[str, Any], source: str) -> list[dict[str, Any]] | None:
    """A source's item entries in a manifest, when it has some and every one passed validation."""
    items = [item for item in manifest.get("items", []) if item.get("source") == source]
    return items if items and all(item.get("validation") == "passed" for item in items) else None


def _store_item(store: EvidenceStore, folder: str, staged: StagedItem, retention_days: int) -> StoredObject:
    item = staged.item
    key = f"{folder}/{item.source}/{item.name}"
    return store.put_file(key, staged.path, item.sha256, retain_until(parse_rfc3339(item.collected_at), retention_days))


def _bundle_of(bundles: list[Bundle], source: str) -> Bundle:
    return next(bundle for bundle in bundles if bundle.source == source)


def _commit(
    store: EvidenceStore,
    run: RunContext,
    folder: str,
    attempt: int,
    body: dict[str, Any],
    retention_days: int,
    now: Callable[[], datetime],
) -> ArchivedRun:
    """Claim the next place in the DAG's chain, then write the manifest it points to."""
    manifest_key = f"{folder}/{MANIFEST_NAME}"
    for _ in range(COMMIT_TRIES):
        previous = latest_link(store, run.dag_id)
        sequence = previous["sequence"] + 1 if previous else 1
        committed_at: datetime = now()
        locked_until = retain_until(committed_at, retention_days)
        manifest = {
            **body,
            "sequence": sequence,
            "previous": {"key": previous["manifest_key"], "sha256": previous["manifest_sha256"]} if previous else None,
            "committed_at": rfc3339(committed_at),
        }
        data = canonical_json(manifest)
        digest = digest_bytes(data)
        link = canonical_json(
            {"dag_id": run.dag_id, "sequence": sequence, "manifest_key": manifest_key, "manifest_sha256": digest.sha256}
        )
        try:
            store.put_bytes(chain_key(run.dag_id, sequence), link, digest_bytes(link).sha256, locked_until)
        except ObjectExistsError:
            log.info("chain position %s of %s taken by a concurrent run; retrying", sequence, run.dag_id)
            continue
        store.put_bytes(manifest_key, data, digest.sha256, locked_until)
        log.info("committed %s (sequence %s, outcome %s)", manifest_key, sequence, body["outcome"])
        return ArchivedRun(manifest_key, digest.sha256, attempt, sequence, body["outcome"], manifest)
    raise ArchiveError(f"{store.url}: could not claim a place in the chain of {run.dag_id} after {COMMIT_TRIES} tries")
