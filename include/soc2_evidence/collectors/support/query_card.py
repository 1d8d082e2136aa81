"""The query card: how a population was selected, archived beside it as one evidence item.

Auditors test information produced by the entity (IPE) by re-performing its query: which
endpoint, which query and parameters, how many pages were read, the total the API reported and
how many rows were archived. A card makes that possible without our code, and a population
whose rows differ from the reported total says so in the card itself.
"""

from __future__ import annotations

from typing import Any

import msgspec

from soc2_evidence.core.staging import BundleWriter


class QueryCard(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One population's selection, as the API was asked for it."""

    population: str
    endpoint: str
    query: str
    parameters: dict[str, Any] = {}
    pages_read: int = 0
    reported_total: int | None = None
    rows_archived: int = 0
    notes: list[str] = []


def card_name(population: str) -> str:
    return f"query-{population}.json"


def add_query_card(writer: BundleWriter, card: QueryCard) -> None:
    """Stage ``card`` as ``query-<population>.json``, beside the population it describes."""
    writer.add_json(
        card_name(card.population),
        msgspec.to_builtins(card),
        description=f"How the {card.population} population was selected: endpoint, query, pages, totals",
    )
