"""Offline verification of an evidence store: nothing changed, nothing missing, nothing added.

Works from read-only access alone, and sees what the store itself keeps:

- **Versions.** Every key is listed with all its versions. Evidence, manifests and links are
  written once, so a second version or a delete marker on any key is an integrity error: it is
  what a rewrite or a deletion leaves behind in a versioned, locked bucket.
- **Chains.** Each DAG's links are walked in sequence order. Each link must name the SHA-256 of the
  link before it; each manifest is read by the version its link names and must hash to what the
  link says. A manifest that no link names is an attempt that never committed.
- **Items.** Every item a committed manifest lists is re-hashed (test servers and some
  S3-compatible stores do not verify checksums), read by the version the manifest recorded,
  and its lock is checked against the retention policy.
- **Nothing else.** Every other key is reported: outside the layout, inside a committed run
  folder but not listed, or part of an uncommitted attempt.
- **The calendar.** Every night from the first committed one to the last complete night (by the
  verifier's clock, :data:`NIGHT_DUE_HOURS` into the night's date) must have a committed run, so a
  removed tail is a missing night, not a shorter period.

Every problem, whatever the store holds, is a line in the report, never a traceback.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from soc2_evidence.archive.layout import CHAIN_PREFIX, MANIFEST_NAME, attempt_folder_of, night_path
from soc2_evidence.archive.run import LINK_SCHEMA, MANIFEST_SCHEMA
from soc2_evidence.archive.stores.base import EvidenceStore, ObjectVersion
from soc2_evidence.archive.stores.s3 import LOCK_MODE
from soc2_evidence.core.errors import EvidenceError, describe
from soc2_evidence.core.evidence import parse_rfc3339, retain_until, utc_now
from soc2_evidence.core.hashing import digest_bytes

HASH_THREADS = 8
#: A night (the UTC date of its runs' logical date) is complete this long after it starts: the shipped
#: schedules run at 02:00-04:00 UTC.
NIGHT_DUE_HOURS = 12
#: The longest calendar one verification lays out: ten years of nights.
MAX_CALENDAR_DAYS = 3660
#: Problems that are about the calendar (exit code 2); every other error is about integrity (exit code 1).
CALENDAR_CHECKS = frozenset({"calendar"})


@dataclass(frozen=True)
class Problem:
    check: str
    key: str
    detail: str


@dataclass
class VerifyReport:
    store: str
    objects_checked: int = 0
    bytes_checked: int = 0
    manifests: int = 0
    chains: dict[str, int] = field(default_factory=dict)
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    calendar: dict[str, dict[str, str]] = field(default_factory=dict)
    period: dict[str, str | None] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def exit_code(self) -> int:
        """0: intact and every night passed; 1: an integrity problem; 2: intact, but nights missing or failed."""
        if any(problem.check not in CALENDAR_CHECKS for problem in self.errors):
            return 1
        failed_nights = any(status != "passed" for days in self.calendar.values() for status in days.values())
        return 2 if self.errors or failed_nights else 0

    def error(self, check: str, key: str, detail: str) -> None:
        self.errors.append(Problem(check, key, detail))

    def warn(self, check: str, key: str, detail: str) -> None:
        self.warnings.append(Problem(check, key, detail))

    def to_dict(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "ok": self.ok,
            "exit_code": self.exit_code,
            "objects_checked": self.objects_checked,
            "bytes_checked": self.bytes_checked,
            "manifests": self.manifests,
            "chains": self.chains,
            "period": self.period,
            "errors": [problem.__dict__ for problem in self.errors],
            "warnings": [problem.__dict__ for problem in self.warnings],
            "calendar": self.calendar,
        }


@dataclass
class _Committed:
    """A manifest some link commits, as read by the version the link names."""

    key: str
    link_key: str
    version_id: str | None
    manifest: dict[str, Any]


def verify_store(
    store: EvidenceStore,
    *,
    since: date | None = None,
    until: date | None = None,
    family: str | None = None,
    retention_days: int | None = None,
    is_copy: bool = False,
    now: Callable[[], datetime] = utc_now,
) -> VerifyReport:
    """Verify everything in ``store`` (nights between ``since`` and ``until``, one ``family`` if given).

    ``is_copy`` says the store is a downloaded copy of an archive: that it cannot lock is then a
    warning, while a manifest that records a mutable store is still an error.

    ``until`` defaults to the last complete night by ``now``: a night is complete
    :data:`NIGHT_DUE_HOURS` after it starts. A dual store is verified copy by copy, each against its
    own manifests, and then the copies are compared: both must hold the same objects and
    byte-identical manifests and links.
    """
    from soc2_evidence.archive.stores.dual import DualStore

    if isinstance(store, DualStore):
        return _verify_copies(
            store, since=since, until=until, family=family, retention_days=retention_days, is_copy=is_copy, now=now
        )
    report = VerifyReport(store=store.url)
    today = now().astimezone(UTC).date()
    last_complete = (now().astimezone(UTC) - timedelta(hours=NIGHT_DUE_HOURS)).date()
    calendar_until = until or last_complete
    report.period = {"since": since.isoformat() if since else None, "until": calendar_until.isoformat()}
    if since and since > calendar_until:
        report.error("period", store.url, f"--since {since} is after the end of the period, {calendar_until}")
        return report
    current = _check_versions(store.list_versions(), report)  # a store that cannot be listed fails the whole run

    def in_scope(key: str) -> bool:
        """In the family and period asked for; without an explicit --until, every later night too."""
        folder = attempt_folder_of(key)
        return (
            folder is not None
            and (not family or folder.family == family)
            and (not since or folder.night >= since)
            and (not until or folder.night <= until)
        )

    committed = _verify_chains(store, current, report)
    referenced: set[str] = set()
    to_hash: list[tuple[str, str | None, str]] = []
    nights: dict[str, dict[date, list[str]]] = defaultdict(lambda: defaultdict(list))
    for entry in committed:
        referenced.add(entry.key)
        folder = attempt_folder_of(entry.key)
        if folder is None or not in_scope(entry.key):
            continue
        report.manifests += 1
        manifest = entry.manifest
        if folder.night > today + timedelta(days=1):
            report.error("calendar", entry.key, f"a run for night {folder.night}, which has not happened yet")
        nights[folder.family][folder.night].append(str(manifest.get("outcome", "unknown")))
        store_info = manifest.get("store") if isinstance(manifest.get("store"), dict) else {}
        if store_info.get("immutable") is False:
            report.error("immutability", entry.key, "archived to a store that could not lock objects")
        policy_days = retention_days or _positive_int(store_info.get("retention_days"))
        _check_lock(store, report, entry.key, entry.version_id, manifest.get("committed_at"), policy_days)
        items = manifest.get("items")
        if not isinstance(items, list):
            report.error("manifest", entry.key, "its items are not a list")
            continue
        for item in items:
            checked = _check_item(store, report, entry.key, folder.prefix, item, current, policy_days)
            if checked:
                referenced.add(checked[0])
                to_hash.append(checked)

    _rehash(store, to_hash, report)
    _check_unreferenced(current, referenced, {entry.key for entry in committed}, in_scope, report)
    _check_pending_uploads(store, report, now)
    families = [family] if family else sorted({folder.family for key in current if (folder := attempt_folder_of(key))})
    report.calendar = _calendar(nights, since, calendar_until, families, report)
    if report.manifests == 0:
        report.error("manifests", store.url, _nothing_found(store.url, since, until, family))
    if not store.immutable:
        if is_copy:
            report.warn("immutability", store.url, "a copy: its locks and versions cannot be checked here")
        else:
            report.error("immutability", store.url, "this store does not lock objects (development store or emulator)")
    return report


def _check_versions(versions: Iterable[ObjectVersion], report: VerifyReport) -> dict[str, ObjectVersion]:
    """The one version of each key; a key with more than one, or with a delete marker, is an error."""
    by_key: dict[str, list[ObjectVersion]] = defaultdict(list)
    for version in versions:
        by_key[version.key].append(version)
    current: dict[str, ObjectVersion] = {}
    for key, found in sorted(by_key.items()):
        markers = [version for version in found if version.delete_marker]
        kept = [version for version in found if not version.delete_marker]
        if markers:
            report.error("versions", key, f"{len(markers)} delete marker(s): evidence was deleted")
        if len(kept) > 1:
            report.error("versions", key, f"{len(kept)} versions: evidence is written once, so it was re-written")
        if kept:
            # Listings give a key's versions newest first: the oldest is what the pipeline wrote, and it is
            # what is verified (a rewrite on top of it is reported above).
            current[key] = kept[-1]
    return current


def _verify_chains(
    store: EvidenceStore,
    current: dict[str, ObjectVersion],
    report: VerifyReport,
) -> list[_Committed]:
    """Walk each DAG's links in sequence order; return every manifest they commit, read and checked."""
    links: dict[str, list[str]] = defaultdict(list)
    for key in current:
        if key.startswith(CHAIN_PREFIX + "/"):
            parts = key.split("/")
            if len(parts) == 3 and parts[2].endswith(".json") and parts[2][:-5].isdigit():
                links[parts[1]].append(key)
            else:
                report.error("chain", key, "unexpected object in the chain folder")
    committed: list[_Committed] = []
    seen_manifests: dict[str, str] = {}
    for dag, keys in sorted(links.items()):
        report.chains[dag] = len(keys)
        previous_sha256: str | None = None
        for expected_sequence, link_key in enumerate(sorted(keys), start=1):
            data = _read(store, report, "chain", link_key, current[link_key].version_id)
            if data is None:
                previous_sha256 = None
                continue
            link = _json_object(data)
            sha256 = digest_bytes(data).sha256
            problem = _link_problem(link, dag, expected_sequence, previous_sha256)
            previous_sha256 = sha256
            if problem:
                report.error("chain", link_key, problem)
                if link is None or attempt_folder_of(str(link.get("manifest_key"))) is None:
                    continue
            assert link is not None
            manifest_key = link["manifest_key"]
            if manifest_key in seen_manifests:
                report.error(
                    "chain", link_key, f"commits {manifest_key} again (first by {seen_manifests[manifest_key]})"
                )
                continue
            seen_manifests[manifest_key] = link_key
            _check_lock(store, report, link_key, current[link_key].version_id, link.get("committed_at"), None)
            entry = _read_manifest(store, report, link_key, link, current, expected_sequence)
            if entry is not None:
                committed.append(entry)
    return committed


def _link_problem(link: dict | None, dag: str, sequence: int, previous_sha256: str | None) -> str | None:
    if link is None:
        return "not a JSON object"
    if link.get("schema") != LINK_SCHEMA:
        return f"not a {LINK_SCHEMA} link (schema {link.get('schema')!r})"
    if link.get("dag_id") != dag and dag != _segment_of(link.get("dag_id")):
        return f"names DAG {link.get('dag_id')!r}, but sits in the chain of {dag}"
    if type(link.get("sequence")) is not int or link["sequence"] != sequence:
        return f"chain of {dag} jumps to sequence {link.get('sequence')!r}; expected {sequence}"
    if link.get("previous_link_sha256") != previous_sha256:
        claimed = link.get("previous_link_sha256")
        return f"says the previous link hashes to {claimed}, but it hashes to {previous_sha256}: the chain is broken"
    if not isinstance(link.get("manifest_key"), str) or not isinstance(link.get("manifest_sha256"), str):
        return "names no manifest key and SHA-256"
    if attempt_folder_of(link["manifest_key"]) is None or not link["manifest_key"].endswith("/" + MANIFEST_NAME):
        return f"names {link['manifest_key'][:200]!r}, which is not a manifest in the run-folder layout"
    return None


def _segment_of(value: Any) -> str | None:
    from soc2_evidence.core.staging import safe_segment

    return safe_segment(value) if isinstance(value, str) else None


def _read_manifest(
    store: EvidenceStore,
    report: VerifyReport,
    link_key: str,
    link: dict[str, Any],
    current: dict[str, ObjectVersion],
    sequence: int,
) -> _Committed | None:
    manifest_key = link["manifest_key"]
    if manifest_key not in current:
        report.error("missing", manifest_key, f"committed by {link_key} but not in the store")
        return None
    version_id = _version_for(store, link.get("manifest_copies"), link.get("manifest_version_id"))
    stored_version = current[manifest_key].version_id
    if stored_version is not None and version_id != stored_version:
        report.error(
            "version", manifest_key, f"{link_key} commits version {version_id!r}, the store holds {stored_version!r}"
        )
    data = _read(store, report, "manifest", manifest_key, stored_version)
    if data is None:
        return None
    digest = digest_bytes(data).sha256
    if digest != link["manifest_sha256"]:
        report.error("manifest_hash", manifest_key, f"hashes to {digest}, {link_key} says {link['manifest_sha256']}")
    manifest = _json_object(data)
    if manifest is None:
        report.error("manifest", manifest_key, "not a JSON object")
        return None
    folder = attempt_folder_of(manifest_key)
    chain = manifest.get("chain") if isinstance(manifest.get("chain"), dict) else {}
    if manifest.get("schema") != MANIFEST_SCHEMA:
        report.error("manifest", manifest_key, f"not a {MANIFEST_SCHEMA} manifest")
    elif folder is None or not manifest_key.endswith("/" + MANIFEST_NAME):
        report.error("layout", manifest_key, "a committed manifest outside the run-folder layout")
        return None
    elif type(chain.get("after_sequence")) is not int or chain["after_sequence"] >= sequence:
        report.error(
            "chain", manifest_key, f"written after link {chain.get('after_sequence')!r}, committed as {sequence}"
        )
    elif manifest.get("committed_at") != link.get("committed_at"):
        report.error("chain", manifest_key, f"committed_at differs from {link_key}'s")
    if folder is None:
        return None
    return _Committed(manifest_key, link_key, stored_version, manifest)


def _check_item(
    store: EvidenceStore,
    report: VerifyReport,
    manifest_key: str,
    folder_prefix: str,
    item: Any,
    current: dict[str, ObjectVersion],
    policy_days: int | None,
) -> tuple[str, str | None, str] | None:
    """One listed item: in its run folder, present, its recorded version, size and lock. Returns what to re-hash."""
    if not isinstance(item, dict) or not isinstance(item.get("key"), str) or not isinstance(item.get("sha256"), str):
        report.error("manifest", manifest_key, f"an item entry without a key and SHA-256: {str(item)[:120]}")
        return None
    key = item["key"]
    if not key.startswith(folder_prefix):
        report.error("layout", key, f"listed by {manifest_key} but outside its run folder")
    stored = current.get(key)
    if stored is None:
        report.error("missing", key, f"listed in {manifest_key} but not in the store")
        return None
    recorded = _version_for(store, item.get("copies"), item.get("version_id"))
    if stored.version_id is not None and recorded != stored.version_id:
        report.error(
            "version",
            key,
            f"{manifest_key} archived version {recorded!r}, the store holds {stored.version_id!r}"
            if recorded
            else f"{manifest_key} records no version id; the store holds {stored.version_id!r}",
        )
    if stored.size != item.get("size"):
        report.error("size", key, f"store has {stored.size} bytes, manifest says {item.get('size')!r}")
    _check_lock(store, report, key, stored.version_id, item.get("collected_at"), policy_days)
    return key, stored.version_id, item["sha256"]


def _version_for(store: EvidenceStore, copies: Any, version_id: Any) -> str | None:
    """The version recorded for this store (each copy of a dual store has its own)."""
    for copy in copies if isinstance(copies, list) else []:
        if isinstance(copy, dict) and copy.get("store") == store.url:
            value = copy.get("version_id")
            return value if isinstance(value, str) else None
    return version_id if isinstance(version_id, str) else None


def _read(store: EvidenceStore, report: VerifyReport, check: str, key: str, version_id: str | None) -> bytes | None:
    try:
        return store.read_bytes(key, version_id)
    except (EvidenceError, OSError) as error:
        report.error(check, key, f"cannot be read: {describe(error)}")
        return None


def _json_object(data: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _positive_int(value: Any) -> int | None:
    return value if type(value) is int and value > 0 else None


def _nothing_found(url: str, since: date | None, until: date | None, family: str | None) -> str:
    """An empty verification proves nothing: most often the URL or its prefix is misspelt, or the scope is wrong."""
    scope = [f"family {family}"] if family else []
    scope += [f"since {since}"] if since else []
    scope += [f"until {until}"] if until else []
    within = f" ({', '.join(scope)})" if scope else ""
    return (
        f"found no committed manifests under {url}{within}; "
        "check the bucket and prefix of the store URL, and the period"
    )


def _verify_copies(store, **scope) -> VerifyReport:
    report = VerifyReport(store=store.url)
    listings = []
    for copy in store.copies:
        part = verify_store(copy, **scope)
        report.objects_checked += part.objects_checked
        report.bytes_checked += part.bytes_checked
        report.manifests = max(report.manifests, part.manifests)
        report.chains = part.chains
        report.period = part.period
        report.calendar = report.calendar or part.calendar
        report.errors += [Problem(p.check, f"{copy.url}: {p.key}", p.detail) for p in part.errors]
        report.warnings += [Problem(p.check, f"{copy.url}: {p.key}", p.detail) for p in part.warnings]
        try:
            listings.append({info.key: info.size for info in copy.list_objects()})
        except EvidenceError as error:
            report.error("listing", copy.url, describe(error))
            return report
    primary, secondary = store.copies
    for key in sorted(set(listings[0]) ^ set(listings[1])):
        holder, missing = (primary, secondary) if key in listings[0] else (secondary, primary)
        report.error("copies", key, f"in {holder.url} but not in {missing.url}")
    for key in sorted(set(listings[0]) & set(listings[1])):
        if key.endswith("/" + MANIFEST_NAME) or key.startswith(CHAIN_PREFIX + "/"):
            try:
                digests = [copy.digest(key).sha256 for copy in store.copies]
            except (EvidenceError, OSError) as error:
                report.error("copies", key, f"cannot be read: {describe(error)}")
                continue
            if digests[0] != digests[1]:
                report.error("copies", key, f"differs between {primary.url} and {secondary.url}")
        elif listings[0][key] != listings[1][key]:
            report.error(
                "copies", key, f"{listings[0][key]} bytes in {primary.url}, {listings[1][key]} in {secondary.url}"
            )
    return report


def _check_lock(
    store: EvidenceStore,
    report: VerifyReport,
    key: str,
    version_id: str | None,
    since_text: Any,
    days: int | None,
) -> None:
    """The version is locked in COMPLIANCE mode for as long as the policy says (from ``since_text``)."""
    if not store.immutable:
        return
    try:
        head = store.head(key, version_id)
    except (EvidenceError, OSError) as error:
        report.error("retention", key, f"cannot read its lock: {describe(error)}")
        return
    if head.lock_mode != LOCK_MODE:
        report.error("retention", key, f"lock mode is {head.lock_mode or 'none'}, expected {LOCK_MODE}")
        return
    if not (days and isinstance(since_text, str) and head.retain_until):
        return
    try:
        required = retain_until(parse_rfc3339(since_text), days)
    except (ValueError, OverflowError):
        report.error("manifest", key, f"its time {since_text[:40]!r} is not an RFC 3339 time")
        return
    if head.retain_until < required:
        report.error(
            "retention",
            key,
            f"retained until {head.retain_until:%Y-%m-%d %H:%M:%S}, policy needs {required:%Y-%m-%d %H:%M:%S}",
        )


def _rehash(store: EvidenceStore, to_hash: list[tuple[str, str | None, str]], report: VerifyReport) -> None:
    def rehash(entry: tuple[str, str | None, str]) -> tuple[str, str, str | None, int, str | None]:
        key, version_id, expected = entry
        try:
            digest = store.digest(key, version_id)
        except (EvidenceError, OSError) as error:
            return key, expected, None, 0, describe(error)
        return key, expected, digest.sha256, digest.size, None

    with ThreadPoolExecutor(max_workers=HASH_THREADS) as pool:
        for key, expected, actual, size, failure in pool.map(rehash, to_hash):
            if failure:
                report.error("hash", key, f"cannot be read: {failure}")
                continue
            report.objects_checked += 1
            report.bytes_checked += size
            if actual != expected:
                report.error("hash", key, f"content hashes to {actual}, manifest says {expected}")


def _check_unreferenced(
    current: dict[str, ObjectVersion],
    referenced: set[str],
    committed: set[str],
    in_scope: Callable[[str], bool],
    report: VerifyReport,
) -> None:
    """Every key nothing committed accounts for: outside the layout (always), or in a run folder in scope."""
    committed_folders = {folder.prefix for key in committed if (folder := attempt_folder_of(key))}
    uncommitted: dict[str, list[str]] = defaultdict(list)
    for key in sorted(current):
        if key in referenced or key.startswith(CHAIN_PREFIX + "/"):
            continue
        folder = attempt_folder_of(key)
        if folder is None:
            report.error("unreferenced", key, "object outside the evidence layout")
        elif not in_scope(key):
            continue
        elif folder.prefix in committed_folders:
            report.error("unreferenced", key, "object in a committed run folder but not in its manifest")
        else:
            uncommitted[folder.prefix].append(key)
    for prefix, keys in sorted(uncommitted.items()):
        has_manifest = any(key.endswith("/" + MANIFEST_NAME) for key in keys)
        report.warn(
            "uncommitted_attempt",
            prefix,
            f"{len(keys)} object(s) "
            + ("with a manifest no chain link commits" if has_manifest else "and no manifest")
            + ": an attempt that never committed (an archive stopped part way); it is not evidence",
        )


def _check_pending_uploads(store: EvidenceStore, report: VerifyReport, now: Callable[[], datetime]) -> None:
    try:
        pending = store.pending_uploads(now(), abort=False)
    except (EvidenceError, OSError) as error:
        report.warn("uploads", store.url, f"cannot list multipart uploads: {describe(error)}")
        return
    for upload in pending:
        report.warn("uploads", upload.key, f"a multipart upload started {upload.initiated} was never completed")


def _calendar(nights, since, until: date, families: list[str], report: VerifyReport) -> dict[str, dict[str, str]]:
    """Per family and night: passed, failed (archived, not valid) or missing (no committed run)."""
    calendar: dict[str, dict[str, str]] = {}
    for name in families:
        seen = nights.get(name, {})
        if not seen and not since:
            continue
        start = since or min(seen)
        if (until - start).days > MAX_CALENDAR_DAYS:
            report.error(
                "period",
                name,
                f"{start} to {until} is longer than {MAX_CALENDAR_DAYS} nights; give --since and --until",
            )
            continue
        days: dict[str, str] = {}
        night = start
        while night <= until:
            outcomes = seen.get(night, [])
            status = "passed" if "passed" in outcomes else "failed" if outcomes else "missing"
            days[night.isoformat()] = status
            if status == "missing":
                report.error("calendar", f"{name}/{night_path(night)}", "no committed run for this night")
            elif status == "failed":
                report.warn(
                    "calendar",
                    f"{name}/{night_path(night)}",
                    "runs archived, but none of every source passed validation",
                )
            night += timedelta(days=1)
        calendar[name] = days
    return calendar
