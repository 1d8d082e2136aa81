"""Secret redaction applied to every piece of evidence before it is written anywhere.

Structured first (:mod:`.documents`: values under sensitive keys, found by parsing the file),
then the detectors (:mod:`.detectors`) over all text. A redacted value becomes
``[REDACTED:<detector>:<fingerprint>]``. The fingerprint is a keyed HMAC-SHA256 of the secret,
so a rotated secret still shows up as a change, while the secret itself (even a short password)
cannot be recovered without the key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from soc2_evidence.core.redaction.detectors import DETECTORS, Candidates, Detector, candidates, may_hold_secret
from soc2_evidence.core.redaction.documents import (
    KEYWORDLESS_FORMATS,
    PAIR_VALUES,
    Secret,
    UnscannableContent,
    locations,
    needs_parsing,
    pair_is_secret,
    parser_for,
    secrets_in_value,
)
from soc2_evidence.core.redaction.keys import (
    is_placeholder,
    is_secret_key_name,
    names_a_collection_of_keys,
    names_a_secret_itself,
)

__all__ = ["DETECTORS", "MARKER_PATTERN", "Redactor", "UnscannableContent", "is_secret_key_name", "may_hold_secret"]

MARKER_PATTERN = re.compile(r"\[REDACTED:[a-z_0-9]+(?::[0-9a-f]{16})?\]")


@dataclass
class Redactor:
    """Replaces secrets in text, documents and structured values; counts what it replaced, per detector."""

    key: bytes | None = None
    counts: Counter[str] = field(default_factory=Counter)

    def marker(self, detector: str, secret: str) -> str:
        if self.key is None:
            return f"[REDACTED:{detector}]"
        fingerprint = hmac.new(self.key, secret.encode("utf-8"), hashlib.sha256).hexdigest()[:16]
        return f"[REDACTED:{detector}:{fingerprint}]"

    def redact_text(self, text: str) -> str:
        """Every detector over ``text``: for file content of no known format, names, subjects, log and alert lines."""
        if not may_hold_secret(text):
            return text
        return self._redact_candidates(text, candidates(text))

    def _redact_candidates(self, text: str, found: Candidates) -> str:
        out, cursor = [], 0
        for start, end, named in found.regions:
            out += [text[cursor:start], self._scan(text[start:end], named, found.detectors)]
            cursor = end
        out.append(text[cursor:])
        return "".join(out)

    def _scan(self, region: str, named: bool, detectors: list[Detector]) -> str:
        """The detectors whose anchors (or secret names) the region holds, in order: earlier ones take precedence."""
        lowered = region.lower()
        for detector in detectors:
            if detector.may_match(region, lowered, named):
                scanned = detector.pattern.sub(self._replacer(detector), region)
                if scanned != region:
                    region, lowered = scanned, scanned.lower()
        return region

    def redact_document(self, path: str, text: str) -> str:
        """A file's text with every secret replaced, structured first by the format of ``path`` (and content).

        Raises :class:`UnscannableContent` when the file is of a known format but does not parse,
        or a secret it holds cannot be found again in its text: the file must then not be archived.
        """
        parser = parser_for(path, text)
        if not may_hold_secret(text) and parser not in KEYWORDLESS_FORMATS:
            return text
        found = candidates(text)
        counts = self.counts.copy()
        try:
            if parser is not None and needs_parsing(parser, text, found):
                structured = self._replace_structured(text, parser(text))
                if structured != text:
                    text, found = structured, candidates(structured)
        except UnscannableContent:
            self.counts = counts  # nothing of the file is written, so nothing of it was redacted
            raise
        return self._redact_candidates(text, found)

    def redact_value(self, value: Any, key_name: str = "") -> Any:
        """Redact a JSON-like value: everything under secret-named keys at any depth, the values of
        secret-named settings ({"name": "db_password", "value": ...}), documents held in strings, and
        the detectors over every other string."""
        if is_secret_key_name(key_name):
            if isinstance(value, int | float) and not names_a_secret_itself(key_name):
                return value  # a count in a record (access_keys: 2), where password: 12345678 is a secret
            records = isinstance(value, list) and value and all(isinstance(item, dict) for item in value)
            if records and names_a_collection_of_keys(key_name):
                return [self.redact_value(item) for item in value]
            return self._redact_secret(value)
        if isinstance(value, dict):
            if value.get("kind") == "Secret":
                return {k: self._redact_secret(v) if k in ("data", "stringData") else v for k, v in value.items()}
            pair = pair_is_secret(value)
            return {
                key: self._redact_secret(item)
                if pair and str(key).lower() in PAIR_VALUES
                else self.redact_value(item, str(key))
                for key, item in value.items()
            }
        if isinstance(value, (list, tuple)):
            return [self.redact_value(item, key_name) for item in value]
        if isinstance(value, str):
            return self._redact_string(value)
        return value

    def _redact_string(self, value: str) -> str:
        if not may_hold_secret(value):
            return value
        try:
            value = self._replace_structured(value, secrets_in_value(value))
        except UnscannableContent:
            # A document in a string whose secrets cannot be found again: keep none of it.
            self.counts["unscannable_value"] += 1
            return self.marker("unscannable_value", value)
        return self.redact_text(value)

    def _replace_structured(self, text: str, secrets: Iterable[Secret]) -> str:
        """Replace each value where its parser says it stands, or where it is found after its key;
        fail closed if one cannot be found."""
        spans: list[tuple[int, int, str]] = []
        taken: set[int] = set()
        for key, value, span in secrets:
            found = [span] if span else locations(text, key, value, taken)
            if found is None:
                raise UnscannableContent(
                    f"a value under the key {self.redact_text(key)[:80]!r} cannot be located in the text to redact it"
                )
            self.counts["secret_field"] += 1
            marker = self.marker("secret_field", value)
            spans += [(start, end, marker) for start, end in found]
            taken.update(start for start, _ in found)
        out, cursor = [], 0
        for start, end, marker in sorted(spans):
            if start < cursor:  # inside a span already replaced (a value that contains another)
                continue
            out += [text[cursor:start], marker]
            cursor = end
        out.append(text[cursor:])
        return "".join(out)

    def _redact_secret(self, value: Any) -> Any:
        """Redact a value under a secret key, at any depth and of any scalar type.

        YAML loads ``password: 123456`` as an int, and ``credentials: {prod: ...}`` puts its
        secrets under harmless inner keys. Only bool and None (which reveal nothing), placeholders
        and markers (so that redacting twice changes nothing) are kept.
        """
        if isinstance(value, dict):
            return {key: self._redact_secret(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._redact_secret(item) for item in value]
        if value is None or isinstance(value, bool):
            return value
        secret = value if isinstance(value, str) else str(value)
        if is_placeholder(secret) or MARKER_PATTERN.fullmatch(secret):
            return value
        self.counts["secret_field"] += 1
        return self.marker("secret_field", secret)

    def _replacer(self, detector: Detector) -> Callable[[re.Match[str]], str]:
        def replace(match: re.Match[str]) -> str:
            group = next(group for group in detector.secret_groups if match[group] is not None)
            names = [match[name] for name in detector.name_groups if match[name]]
            secret = match[group].rstrip()  # a block's last newline is not secret: the next line stays a line
            if (
                (names and not is_secret_key_name(names[0]))
                or is_placeholder(secret)
                or MARKER_PATTERN.search(secret)  # an earlier detector took it: "Bearer [REDACTED:...]"
                or (detector.accept is not None and not detector.accept(secret))
            ):
                # Kept, but what the match took as its value may hold a secret of its own (the next line:
                # "token_rotation:\n  secret: x"; a quote left open over later lines): search it. It is
                # shorter than the match, so this ends.
                value_start = match.start(group) - match.start()
                if value_start == 0:
                    return match[0]
                return match[0][:value_start] + detector.pattern.sub(self._replacer(detector), match[0][value_start:])
            self.counts[detector.name] += 1
            start = match.start(group)
            end = start + len(secret)
            whole_start = match.start()
            return match[0][: start - whole_start] + self.marker(detector.name, secret) + match[0][end - whole_start :]

        return replace
