"""Archive one run: store every staged item, write its manifest, then commit it with a chain link.

Order is the guarantee. Items are written first, each under a key never used before and each
confirmed by version. Then the manifest, which lists them. Then the *link*: the commit point.
A link names the manifest by key, version and SHA-256, carries the DAG's sequence number and
the SHA-256 of the previous link, and is claimed with a conditional write, so two runs cannot take
one place. A manifest without a link is an attempt that never committed, whatever it says.

Every write is idempotent (see :mod:`soc2_evidence.archive.stores.base`), so a lost response or
a retry never turns into a false conflict, and an archive killed at any point leaves the chain
intact: the next run commits the next attempt after the last link. The same run archived twice
at once commits once: both find the attempt's manifest and the second one adopts it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
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
from soc2_evidence.archive.stores.base import EvidenceStore, PendingUpload, StoredObject
from soc2_evidence.core.errors import ArchiveError, ObjectExistsError, StoreConfigError
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

MANIFEST_SCHEMA = "soc2-evidence/manifest/v2"
LINK_SCHEMA = "soc2-evidence/link/v1"
UPLOAD_THREADS = 8
COMMIT_TRIES = 8
CHAIN_LIMIT = 1_000_000  # links one walk may read: far beyond a century of nightly runs, short of forever
STALE_UPLOAD_AGE = timedelta(hours=24)
#: A source a manual run left out by its ``sources`` param: not expected, so not a failure, but the
#: run is then ``partial``, never ``passed``: a night is proven only by a run of every source.
NOT_SELECTED = "not_selected"


@dataclass(frozen=True)
class SourceOutcome:
    """What happened to one configured source in this run."""

    name: str
    kind: str
    status: str  # "archived" or "extraction_failed"
    error: str | None = None


@dataclass(frozen=True)
class ArchivedRun:
    """A committed run: its manifest, and the link that committed it.

    ``adopted`` is True when another archive of the same run wrote the manifest first and this one
    found it (committed by either of them, exactly once)."""

    manifest_key: str
    manifest_sha256: str
    attempt: int
    sequence: int
    outcome: str
    manifest: dict[str, Any]
    link_key: str
    adopted: bool = False


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
    allow_mutable_store: bool = False,
    abort_stale_uploads: bool = True,
    now: Callable[[], datetime] = utc_now,
) -> ArchivedRun:
    """Store every bundle's items and commit the run; return where the manifest landed.

    ``item_status`` maps (source, name) to ``passed``/``failed``; items not in it are
    ``not_validated``. ``validation`` is the validation summary (None: validation did not run).
    A failed source, a failed item or a validation that did not pass makes the run's outcome
    ``failed``, but everything that was collected is still archived. ``now`` gives the manifest's
    ``committed_at`` (and so the retain-until date of the manifest and its chain link).

    A store that cannot lock objects is refused unless ``allow_mutable_store`` (the configuration's
    ``store.immutable: false``, for development); the manifest then says the store is mutable, and
    ``evidence verify`` fails on every such manifest. Multipart uploads left under the store's prefix for over a day
    (by a killed archive) are aborted when ``abort_stale_uploads``, and listed in the manifest either way.
    """
    store.check_writable(retention_days)
    if not store.immutable and not allow_mutable_store:
        raise StoreConfigError(
            f"store {store.url} cannot lock objects, and evidence must be immutable: use an S3 Object Lock or a "
            "locked GCS bucket (for development only, set store.immutable: false in the configuration)"
        )
    item_status = item_status or {}
    pending = store.pending_uploads(now() - STALE_UPLOAD_AGE, abort=abort_stale_uploads)
    for upload in pending:
        log.warning("stale multipart upload of %s (%s)", upload.key, "aborted" if upload.aborted else "left")
    staged = [staged for bundle in bundles for staged in bundle.items]
    attempt, stored = _store_items(store, family, run, staged, retention_days)
    folder = attempt_prefix(family, run, attempt)

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

    failed_sources = [source.name for source in sources if source.status not in ("archived", NOT_SELECTED)]
    failed_items = [entry["key"] for entry in entries if entry["validation"] == "failed"]
    validated = validation is not None and validation.get("status") == "passed"
    outcome = "passed" if validated and not failed_sources and not failed_items else "failed"
    if outcome == "passed" and any(source.status == NOT_SELECTED for source in sources):
        outcome = "partial"
    archived = {bundle.source: bundle for bundle in bundles}
    body = {
        "schema": MANIFEST_SCHEMA,
        "family": family,
        "run": run.to_dict(),
        "attempt": attempt,
        "store": {
            "url": store.url,
            "immutable": store.immutable,
            "retention_days": retention_days,
            "stale_uploads": [_pending(upload) for upload in pending],
        },
        "tool": {"name": "soc2-evidence", "version": __version__, "code_revision": code_revision()},
        "sources": [
            {
                **source.__dict__,
                "redactions": archived[source.name].redactions if source.name in archived else {},
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


def _attempts(store: EvidenceStore, family: str, run: RunContext) -> dict[int, set[str]]:
    """Each attempt of the run in the store, with the keys it holds."""
    prefix = run_prefix(family, run) + "/"
    attempts: dict[int, set[str]] = {}
    for info in store.list_objects(prefix):
        number = attempt_number(info.key[len(prefix) :].split("/", 1)[0])
        if number is not None:
            attempts.setdefault(number, set()).add(info.key)
    return attempts


def _store_items(
    store: EvidenceStore, family: str, run: RunContext, staged: list[StagedItem], retention_days: int
) -> tuple[int, list[StoredObject]]:
    """Store every item in an attempt folder; return the attempt and where each item landed.

    The run's newest attempt is taken up again when what it holds is a subset of what we write,
    byte for byte: that is another archive of this same run in progress (or done), or one that was
    killed part way. Writing the same bytes again is confirmed, not refused, so both archives end
    up with the same attempt, and its manifest is committed once. An attempt holding anything else
    (another try's content) is left as it is, and a new one is started.
    """
    attempts = _attempts(store, family, run)
    newest = max(attempts, default=0)
    if newest:
        folder = attempt_prefix(family, run, newest)
        ours = {f"{folder}/{item.item.source}/{item.item.name}" for item in staged} | {f"{folder}/{MANIFEST_NAME}"}
        if attempts[newest] <= ours:
            try:
                return newest, _upload(store, folder, staged, retention_days)
            except ObjectExistsError as error:
                log.info("attempt %s of %s holds other content (%s); starting a new attempt", newest, run.run_id, error)
    attempt = newest + 1
    return attempt, _upload(store, attempt_prefix(family, run, attempt), staged, retention_days)


def _upload(store: EvidenceStore, folder: str, staged: list[StagedItem], retention_days: int) -> list[StoredObject]:
    with ThreadPoolExecutor(max_workers=UPLOAD_THREADS) as pool:
        return list(pool.map(lambda staged_item: _store_item(store, folder, staged_item, retention_days), staged))


@dataclass(frozen=True)
class Link:
    """One chain link as stored: its key, its bytes' SHA-256 and what it says."""

    key: str
    sha256: str
    body: dict[str, Any]

    @property
    def sequence(self) -> int:
        return self.body["sequence"]

    @property
    def manifest_key(self) -> str:
        return self.body["manifest_key"]


class ChainError(ArchiveError):
    """A DAG's chain cannot be walked: a link is unreadable, out of sequence, or not what its successor names."""


def chain_keys(store: EvidenceStore, dag_id: str) -> list[str]:
    """The DAG's link keys, oldest first (sequence numbers are zero-padded, so key order is sequence order)."""
    return [info.key for info in store.list_objects(chain_prefix(dag_id))]


def read_link(store: EvidenceStore, key: str) -> Link:
    data = store.read_bytes(key)
    try:
        body = json.loads(data)
    except ValueError as error:
        raise ChainError(f"{store.url}/{key}: chain link is not valid JSON") from error
    if not isinstance(body, dict) or body.get("schema") != LINK_SCHEMA or not isinstance(body.get("sequence"), int):
        raise ChainError(f"{store.url}/{key}: not a {LINK_SCHEMA} chain link")
    return Link(key, digest_bytes(data).sha256, body)


def latest_link(store: EvidenceStore, dag_id: str) -> dict[str, Any] | None:
    """The newest chain link of a DAG, or None before its first committed run."""
    keys = chain_keys(store, dag_id)
    return read_link(store, keys[-1]).body if keys else None


def committed_links(store: EvidenceStore, dag_id: str) -> Iterator[Link]:
    """The DAG's links, newest first, each checked against the ``previous_link_sha256`` of the one after it.

    The walk goes by sequence number, so it cannot loop; it stops with :class:`ChainError` at a link
    that does not match its successor's claim, at a gap, or after :data:`CHAIN_LIMIT` links.
    """
    keys = chain_keys(store, dag_id)
    expected_sha256: str | None = None
    expected_sequence: int | None = None
    for count, key in enumerate(reversed(keys)):
        if count >= CHAIN_LIMIT:
            raise ChainError(f"{store.url}: the chain of {dag_id} is longer than {CHAIN_LIMIT} links; walk stopped")
        link = read_link(store, key)
        if expected_sequence is not None and link.sequence != expected_sequence:
            raise ChainError(f"{store.url}/{key}: sequence {link.sequence}, expected {expected_sequence}")
        if expected_sha256 is not None and link.sha256 != expected_sha256:
            raise ChainError(f"{store.url}/{key}: hashes to {link.sha256}, the next link says {expected_sha256}")
        yield link
        expected_sha256 = link.body.get("previous_link_sha256")
        expected_sequence = link.sequence - 1
        if expected_sha256 is None:
            return


def committed_manifests(store: EvidenceStore, dag_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """The DAG's committed manifests, newest first, each read by the version its link names and checked
    against the link's SHA-256."""
    for link in committed_links(store, dag_id):
        data = store.read_bytes(link.manifest_key, link.body.get("manifest_version_id"))
        if digest_bytes(data).sha256 != link.body.get("manifest_sha256"):
            raise ChainError(f"{store.url}/{link.manifest_key}: does not hash to what link {link.key} says")
        yield link.manifest_key, json.loads(data)


def passed_items(manifest: dict[str, Any], source: str) -> list[dict[str, Any]] | None:
    """A source's item entries in a manifest, when it has some and every one passed validation."""
    items = [item for item in manifest.get("items", []) if item.get("source") == source]
    return items if items and all(item.get("validation") == "passed" for item in items) else None


def _store_item(store: EvidenceStore, folder: str, staged: StagedItem, retention_days: int) -> StoredObject:
    """One staged item under ``folder/<source>/<name>``, locked from the time it was collected."""
    item = staged.item
    key = f"{folder}/{item.source}/{item.name}"
    return store.put_file(key, staged.path, item.sha256, retain_until(parse_rfc3339(item.collected_at), retention_days))


def _pending(upload: PendingUpload) -> dict[str, Any]:
    return {
        "key": upload.key,
        "initiated": rfc3339(upload.initiated) if upload.initiated else None,
        "aborted": upload.aborted,
    }


def _commit(
    store: EvidenceStore,
    run: RunContext,
    folder: str,
    attempt: int,
    body: dict[str, Any],
    retention_days: int,
    now: Callable[[], datetime],
) -> ArchivedRun:
    """Write the manifest, then claim the next link of the DAG's chain for it.

    The manifest records the chain's length when it was written (``chain.after_sequence``): a link
    to it can only come later, so before each claim the links since then are searched for one that
    already commits it (a concurrent archive of the same run, or a claim whose response was lost).
    """
    manifest_key = f"{folder}/{MANIFEST_NAME}"
    keys = chain_keys(store, run.dag_id)
    committed_at: datetime = now()
    locked_until = retain_until(committed_at, retention_days)
    manifest = {
        **body,
        "chain": {"dag_id": run.dag_id, "after_sequence": len(keys)},
        "committed_at": rfc3339(committed_at),
    }
    data = canonical_json(manifest)
    adopted = False
    try:
        stored = store.put_bytes(manifest_key, data, digest_bytes(data).sha256, locked_until)
    except ObjectExistsError:
        # Another archive of this same run reached this attempt's manifest first: commit that one.
        stored, data, manifest = _adopt(store, manifest_key, body)
        locked_until = retain_until(parse_rfc3339(manifest["committed_at"]), retention_days)
        adopted = True
        log.warning("%s was written by a concurrent archive of the same run; committing it once", manifest_key)
    digest = digest_bytes(data)
    after = int(manifest["chain"]["after_sequence"])
    for _ in range(COMMIT_TRIES):
        keys = chain_keys(store, run.dag_id)
        for key in keys[after:]:
            link = read_link(store, key)
            if link.manifest_key == manifest_key and link.body.get("manifest_sha256") == digest.sha256:
                log.info("%s is already committed by %s", manifest_key, key)
                return ArchivedRun(
                    manifest_key, digest.sha256, attempt, link.sequence, manifest["outcome"], manifest, key, True
                )
        previous = read_link(store, keys[-1]) if keys else None
        sequence = previous.sequence + 1 if previous else 1
        link_body = {
            "schema": LINK_SCHEMA,
            "dag_id": run.dag_id,
            "sequence": sequence,
            "manifest_key": manifest_key,
            "manifest_version_id": stored.version_id,
            "manifest_copies": list(stored.copies),
            "manifest_sha256": digest.sha256,
            "committed_at": manifest["committed_at"],
            "previous_link_sha256": previous.sha256 if previous else None,
        }
        link_data = canonical_json(link_body)
        link_key = chain_key(run.dag_id, sequence)
        try:
            store.put_bytes(link_key, link_data, digest_bytes(link_data).sha256, locked_until)
        except ObjectExistsError:
            log.info("chain position %s of %s taken by a concurrent run; retrying", sequence, run.dag_id)
            continue
        log.info("committed %s as %s (outcome %s)", manifest_key, link_key, manifest["outcome"])
        return ArchivedRun(
            manifest_key, digest.sha256, attempt, sequence, manifest["outcome"], manifest, link_key, adopted
        )
    raise ArchiveError(
        f"{store.url}: could not claim a place in the chain of {run.dag_id} after {COMMIT_TRIES} tries; "
        f"{manifest_key} stays an uncommitted attempt and the next run commits anew"
    )


def _adopt(store: EvidenceStore, manifest_key: str, body: dict[str, Any]) -> tuple[StoredObject, bytes, dict[str, Any]]:
    """The manifest a concurrent archive of the same run wrote, if it archives the same items as ours;
    confirmed by re-writing its own bytes."""
    data = store.read_bytes(manifest_key)
    try:
        manifest = json.loads(data)
    except ValueError:
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("schema") != MANIFEST_SCHEMA or "chain" not in manifest:
        raise ObjectExistsError(f"{store.url}/{manifest_key} holds something that is not one of our manifests")
    if _archived_items(manifest) != _archived_items(body):
        raise ObjectExistsError(
            f"{store.url}/{manifest_key} was written by another archive of this run with other items; "
            "this archive stops, and a rerun archives a new attempt"
        )
    locked_until = retain_until(parse_rfc3339(manifest["committed_at"]), int(manifest["store"]["retention_days"]))
    return store.put_bytes(manifest_key, data, digest_bytes(data).sha256, locked_until), data, manifest


def _archived_items(manifest: dict[str, Any]) -> set[tuple[Any, Any]]:
    return {(item.get("key"), item.get("sha256")) for item in manifest.get("items", []) if isinstance(item, dict)}
