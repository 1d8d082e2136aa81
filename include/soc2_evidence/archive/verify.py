"""Offline verification of an evidence store: nothing changed, nothing missing, nothing added.

Works from read-only access alone. It re-hashes every object itself (test servers and
some S3-compatible stores do not verify checksums), walks every DAG's manifest chain,
checks the lock on every object, and lays out a calendar of nights with no complete run.
"""

from __future__ import annotations

import json
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from soc2_evidence.archive.layout import CHAIN_PREFIX, MANIFEST_NAME, attempt_folder_of
from soc2_evidence.archive.stores.base import EvidenceStore, ObjectInfo
from soc2_evidence.archive.stores.s3 import LOCK_MODE
from soc2_evidence.core.evidence import parse_rfc3339, retain_until
from soc2_evidence.core.hashing import digest_bytes, digest_stream

HASH_THREADS = 8


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

    @property
    def ok(self) -> bool:
        return not self.errors

    def error(self, check: str, key: str, detail: str) -> None:
        self.errors.append(Problem(check, key, detail))

    def warn(self, check: str, key: str, detail: str) -> None:
        self.warnings.append(Problem(check, key, detail))

    def to_dict(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "ok": self.ok,
            "objects_checked": self.objects_checked,
            "bytes_checked": self.bytes_checked,
            "manifests": self.manifests,
            "chains": self.chains,
            "errors": [problem.__dict__ for problem in self.errors],
            "warnings": [problem.__dict__ for problem in self.warnings],
            "calendar": self.calendar,
        }


def verify_store(
    store: EvidenceStore,
    *,
    since: date | None = None,
    until: date | None = None,
    family: str | None = None,
    retention_days: int | None = None,
) -> VerifyReport:
    """Verify everything in ``store`` (nights between ``since`` and ``until``, one ``family`` if given).

    A dual store is verified copy by copy, each against its own manifests, and then the copies
    are compared: both must hold the same objects and byte-identical manifests.
    """
    from soc2_evidence.archive.stores.dual import DualStore

    if isinstance(store, DualStore):
        return _verify_copies(store, since=since, until=until, family=family, retention_days=retention_days)
    report = VerifyReport(store=store.url)
    objects = {info.key: info for info in store.list_objects()}
    in_scope = _scope(since, until, family)

    manifests, link_of = _verify_chains(store, objects, report)
    for key in sorted(objects):
        if key.endswith("/" + MANIFEST_NAME) and key not in manifests and in_scope(key):
            report.error(
                "chain", key, "manifest is not referenced by any chain link (added or re-written outside the pipeline)"
            )

    referenced: set[str] = set()
    to_hash: list[tuple[str, str, int]] = []
    nights: dict[str, dict[date, list[str]]] = defaultdict(lambda: defaultdict(list))
    for key, manifest in sorted(manifests.items()):
        referenced.add(key)
        if manifest is None or not in_scope(key):
            continue
        report.manifests += 1
        folder = attempt_folder_of(key)
        assert folder is not None
        nights[manifest.get("family", folder.family)][folder.night].append(manifest.get("outcome", "unknown"))
        policy_days = retention_days or manifest.get("store", {}).get("retention_days")
        for committed_key in (key, link_of[key]):
            _check_object(store, report, committed_key, manifest.get("committed_at"), policy_days, None)
        for entry in manifest.get("items", []):
            item_key = entry.get("key", "")
            referenced.add(item_key)
            if not item_key.startswith(folder.prefix):
                report.error("layout", item_key, f"listed by {key} but outside its run folder")
            if item_key not in objects:
                report.error("missing", item_key, f"listed in {key} but not in the store")
                continue
            if objects[item_key].size != entry.get("size"):
                report.error(
                    "size", item_key, f"store has {objects[item_key].size} bytes, manifest says {entry.get('size')}"
                )
            to_hash.append((item_key, entry.get("sha256", ""), entry.get("size", 0)))
            _check_object(store, report, item_key, entry.get("collected_at"), policy_days, _version_in(store, entry))

    _rehash(store, to_hash, report)
    _check_unreferenced(objects, referenced, manifests, in_scope, report)
    families = [family] if family else sorted({folder.family for key in objects if (folder := attempt_folder_of(key))})
    report.calendar = _calendar(nights, since, until, families, report)
    if report.manifests == 0:
        report.error("manifests", store.url, _nothing_found(store.url, since, until, family))
    if not store.immutable:
        report.warn("immutability", store.url, "this store does not lock objects (development store or emulator)")
    return report


def _nothing_found(url: str, since: date | None, until: date | None, family: str | None) -> str:
    """An empty verification proves nothing: most often the URL or its prefix is misspelt, or the scope is wrong."""
    scope = [f"family {family}"] if family else []
    scope += [f"since {since}"] if since else []
    scope += [f"until {until}"] if until else []
    within = f" ({', '.join(scope)})" if scope else ""
    return f"found no manifests under {url}{within}; check the bucket and prefix of the store URL, and the period"


def _version_in(store: EvidenceStore, entry: dict[str, Any]) -> str | None:
    """The version the manifest archived in this store (each copy of a dual store has its own)."""
    for copy in entry.get("copies") or []:
        if copy.get("store") == store.url:
            return copy.get("version_id")
    return entry.get("version_id")


def _verify_copies(store, **scope) -> VerifyReport:
    report = VerifyReport(store=store.url)
    listings = []
    for copy in store.copies:
        part = verify_store(copy, **scope)
        report.objects_checked += part.objects_checked
        report.bytes_checked += part.bytes_checked
        report.manifests = max(report.manifests, part.manifests)
        report.chains = part.chains
        report.calendar = report.calendar or part.calendar
        report.errors += [Problem(p.check, f"{copy.url}: {p.key}", p.detail) for p in part.errors]
        report.warnings += [Problem(p.check, f"{copy.url}: {p.key}", p.detail) for p in part.warnings]
        listings.append({info.key: info.size for info in copy.list_objects()})
    primary, secondary = store.copies
    for key in sorted(set(listings[0]) ^ set(listings[1])):
        holder, missing = (primary, secondary) if key in listings[0] else (secondary, primary)
        report.error("copies", key, f"in {holder.url} but not in {missing.url}")
    for key in sorted(set(listings[0]) & set(listings[1])):
        if key.endswith("/" + MANIFEST_NAME) or key.startswith(CHAIN_PREFIX + "/"):
            digests = [digest_bytes(copy.read_bytes(key)).sha256 for copy in store.copies]
            if digests[0] != digests[1]:
                report.error("copies", key, f"differs between {primary.url} and {secondary.url}")
        elif listings[0][key] != listings[1][key]:
            report.error(
                "copies", key, f"{listings[0][key]} bytes in {primary.url}, {listings[1][key]} in {secondary.url}"
            )
    return report


def _scope(since: date | None, until: date | None, family: str | None):
    def in_scope(key: str) -> bool:
        folder = attempt_folder_of(key)
        if folder is None:
            return family is None and since is None and until is None
        if family and folder.family != family:
            return False
        if since and folder.night < since:
            return False
        return not (until and folder.night > until)

    return in_scope


def _verify_chains(
    store: EvidenceStore, objects: dict[str, ObjectInfo], report: VerifyReport
) -> tuple[dict[str, dict | None], dict[str, str]]:
    """Walk each DAG's chain links in order; return every manifest they reach (None if unreadable) and its link."""
    links: dict[str, list[str]] = defaultdict(list)
    for key in objects:
        if key.startswith(CHAIN_PREFIX + "/"):
            parts = key.split("/")
            if len(parts) == 3 and parts[2].endswith(".json"):
                links[parts[1]].append(key)
            else:
                report.error("chain", key, "unexpected object in the chain folder")
    manifests: dict[str, dict | None] = {}
    link_of: dict[str, str] = {}
    for dag, keys in sorted(links.items()):
        previous: dict[str, Any] | None = None
        report.chains[dag] = len(keys)
        for expected_sequence, link_key in enumerate(sorted(keys), start=1):
            link = _read_json(store, link_key, report)
            if link is None:
                previous = None
                continue
            sequence = link.get("sequence")
            if sequence != expected_sequence:
                report.error(
                    "chain", link_key, f"chain of {dag} jumps to sequence {sequence}; expected {expected_sequence}"
                )
            manifest_key = link.get("manifest_key", "")
            link_of[manifest_key] = link_key
            if manifest_key not in objects:
                report.error("chain", manifest_key, f"manifest {sequence} of {dag} is missing (removed from the chain)")
                manifests[manifest_key] = None
                previous = link
                continue
            data = store.read_bytes(manifest_key)
            digest = digest_bytes(data).sha256
            if digest != link.get("manifest_sha256"):
                report.error(
                    "manifest_hash",
                    manifest_key,
                    f"manifest hashes to {digest}, its chain link says {link.get('manifest_sha256')}",
                )
            try:
                manifest = json.loads(data)
            except ValueError as error:
                report.error("manifest", manifest_key, f"not valid JSON: {error}")
                manifests[manifest_key] = None
                previous = link
                continue
            expected_previous = (
                {"key": previous["manifest_key"], "sha256": previous["manifest_sha256"]} if previous else None
            )
            if expected_sequence > 1 and manifest.get("previous") != expected_previous:
                report.error(
                    "chain",
                    manifest_key,
                    f"previous manifest recorded as {manifest.get('previous')}, chain says {expected_previous}",
                )
            if expected_sequence == 1 and manifest.get("previous") is not None:
                report.error(
                    "chain",
                    manifest_key,
                    "first manifest of the chain names a previous one: the chain's start is missing",
                )
            if manifest.get("sequence") != sequence:
                report.error(
                    "chain",
                    manifest_key,
                    f"manifest says sequence {manifest.get('sequence')}, its link says {sequence}",
                )
            manifests[manifest_key] = manifest
            previous = link
    return manifests, link_of


def _read_json(store: EvidenceStore, key: str, report: VerifyReport) -> dict[str, Any] | None:
    try:
        value = json.loads(store.read_bytes(key))
    except ValueError as error:
        report.error("chain", key, f"not valid JSON: {error}")
        return None
    return value if isinstance(value, dict) else None


def _check_object(
    store: EvidenceStore,
    report: VerifyReport,
    key: str,
    since_text: str | None,
    days: int | None,
    version_id: str | None,
) -> None:
    """The object is still the version that was archived, and locked for as long as the policy says."""
    if not store.immutable:
        return
    head = store.head(key)
    if version_id and head.version_id != version_id:
        report.error("version", key, f"current version is {head.version_id}, the manifest archived {version_id}")
    if head.lock_mode != LOCK_MODE:
        report.error("retention", key, f"lock mode is {head.lock_mode or 'none'}, expected {LOCK_MODE}")
        return
    if days and since_text and head.retain_until:
        required = retain_until(parse_rfc3339(since_text), days)
        if head.retain_until < required:
            report.error(
                "retention",
                key,
                f"retained until {head.retain_until:%Y-%m-%d %H:%M:%S}, policy needs {required:%Y-%m-%d %H:%M:%S}",
            )


def _rehash(store: EvidenceStore, to_hash: list[tuple[str, str, int]], report: VerifyReport) -> None:
    def rehash(entry: tuple[str, str, int]) -> tuple[str, str, str, int]:
        key, expected, _ = entry
        with store.open(key) as stream:
            digest = digest_stream(stream)
        return key, expected, digest.sha256, digest.size

    with ThreadPoolExecutor(max_workers=HASH_THREADS) as pool:
        for key, expected, actual, size in pool.map(rehash, to_hash):
            report.objects_checked += 1
            report.bytes_checked += size
            if actual != expected:
                report.error("hash", key, f"content hashes to {actual}, manifest says {expected}")


def _check_unreferenced(objects, referenced, manifests, in_scope, report: VerifyReport) -> None:
    committed_folders = {folder.prefix for key in manifests if (folder := attempt_folder_of(key))}
    incomplete: dict[str, int] = defaultdict(int)
    for key in sorted(objects):
        if key in referenced or key.startswith(CHAIN_PREFIX + "/") or not in_scope(key):
            continue
        folder = attempt_folder_of(key)
        if folder is None:
            report.error("unreferenced", key, "object outside the evidence layout")
        elif folder.prefix in committed_folders:
            report.error("unreferenced", key, "object in a committed run folder but not in its manifest")
        elif not key.endswith("/" + MANIFEST_NAME):
            incomplete[folder.prefix] += 1
    for prefix, count in sorted(incomplete.items()):
        report.warn(
            "incomplete_attempt", prefix, f"{count} object(s) with no manifest: an attempt that never committed"
        )


def _calendar(nights, since, until, families: list[str], report: VerifyReport) -> dict[str, dict[str, str]]:
    """Per family and night: passed, failed (archived, not valid) or missing (no committed run)."""
    calendar: dict[str, dict[str, str]] = {}
    for name in families:
        seen = nights.get(name, {})
        if not seen and not (since and until):
            continue
        start = since or min(seen)
        end = until or max(seen)
        days: dict[str, str] = {}
        night = start
        while night <= end:
            outcomes = seen.get(night, [])
            status = "passed" if "passed" in outcomes else "failed" if outcomes else "missing"
            days[night.isoformat()] = status
            if status == "missing":
                report.error("calendar", f"{name}/{night:%Y/%m/%d}", "no complete run for this night")
            elif status == "failed":
                report.warn("calendar", f"{name}/{night:%Y/%m/%d}", "runs archived but none passed validation")
            night += timedelta(days=1)
        calendar[name] = days
    return calendar
