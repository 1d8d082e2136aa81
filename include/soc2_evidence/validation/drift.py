"""Drift: what changed in each source's configuration since its previous committed snapshot.

The previous snapshot is found through the DAG's hash chain: the newest committed manifest in
which every item of the source passed validation (the rule watermarks use too). Its dataset
items are read back from the store, checked against the hashes the manifest recorded, and
compared record by record on the dataset's key. A source with no previous snapshot is a
baseline. Drift is evidence of change (CC8.1), not a check.
"""

from __future__ import annotations

import itertools
import json
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from soc2_evidence.archive.run import committed_manifests, passed_items
from soc2_evidence.archive.stores.base import EvidenceStore
from soc2_evidence.core.datasets import Dataset, load_records
from soc2_evidence.core.hashing import digest_bytes
from soc2_evidence.core.staging import Bundle

LOOKBACK_MANIFESTS = 31  # how far back the chain is walked for a source's previous snapshot


def drift(
    previous_records: Iterable[dict[str, Any]], current_records: Iterable[dict[str, Any]], key: Sequence[str]
) -> dict[str, list[Any]]:
    """Records added, removed and changed between two snapshots of one dataset, matched on ``key``.

    A changed record lists only the fields that differ, each as ``[old, new]``. Every list is
    sorted by key, so the same two snapshots always give the same bytes.
    """
    previous = {_key_text(record, key): record for record in previous_records}
    current = {_key_text(record, key): record for record in current_records}
    changed = []
    for text in sorted(previous.keys() & current.keys()):
        old, new = previous[text], current[text]
        fields = {
            column: [old.get(column), new.get(column)]
            for column in sorted(old.keys() | new.keys())
            if old.get(column) != new.get(column)
        }
        if fields:
            changed.append({"key": {column: new.get(column) for column in key}, "fields": fields})
    return {
        "added": [current[text] for text in sorted(current.keys() - previous.keys())],
        "removed": [previous[text] for text in sorted(previous.keys() - current.keys())],
        "changed": changed,
    }


class History:
    """A DAG's last committed manifests, newest first, read from the store once per validation run."""

    def __init__(self, store: EvidenceStore, dag_id: str, lookback: int = LOOKBACK_MANIFESTS) -> None:
        self.store, self.dag_id, self.lookback = store, dag_id, lookback
        self._manifests: list[tuple[str, dict[str, Any]]] | None = None

    def manifests(self) -> list[tuple[str, dict[str, Any]]]:
        if self._manifests is None:
            self._manifests = list(itertools.islice(committed_manifests(self.store, self.dag_id), self.lookback))
        return self._manifests

    def source_drift(self, bundle: Bundle, datasets: Sequence[Dataset]) -> dict[str, Any]:
        """The drift of one staged source against its previous snapshot, per dataset."""
        found = next(
            (
                (key, manifest, items)
                for key, manifest in self.manifests()
                if (items := passed_items(manifest, bundle.source))
            ),
            None,
        )
        result: dict[str, Any] = {"source": bundle.source, "kind": bundle.kind, "baseline": found is None}
        if found is None:
            result.update(previous=None, datasets={})
            return result
        manifest_key, manifest, items = found
        result["previous"] = {
            "manifest": manifest_key,
            "run_id": manifest["run"]["run_id"],
            "logical_date": manifest["run"]["logical_date"],
        }
        entries = {entry["name"]: entry for entry in items}
        staged = {item.item.name: item for item in bundle.items}
        result["datasets"] = {
            dataset.name: self._dataset_drift(dataset, entries.get(dataset.item), staged.get(dataset.item))
            for dataset in datasets
        }
        return result

    def _dataset_drift(self, dataset: Dataset, entry: dict[str, Any] | None, staged) -> dict[str, Any]:
        if staged is None:
            return {"not_compared": "this run did not produce the item"}
        if entry is None:
            return {"not_compared": "the previous snapshot has no such item"}
        data = self.store.read_bytes(entry["key"])
        if digest_bytes(data).sha256 != entry["sha256"]:
            return {"not_compared": f"{entry['key']} does not match the sha256 its manifest records"}
        try:
            with tempfile.TemporaryDirectory(prefix="soc2-evidence-drift-") as scratch:
                path = Path(scratch) / Path(dataset.item).name
                path.write_bytes(data)
                previous = load_records(dataset, path)
            current = load_records(dataset, staged.path)
        except (ValueError, KeyError) as error:
            return {"not_compared": f"unreadable records: {error}"}
        return drift(previous, current, dataset.key)


def _key_text(record: dict[str, Any], key: Sequence[str]) -> str:
    """The key as canonical text: hashable and ordered whatever the key's value types."""
    return json.dumps([record.get(column) for column in key], sort_keys=True, ensure_ascii=False)
