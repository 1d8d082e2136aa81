"""Secret redaction applied to every piece of evidence before it is written anywhere.

A redacted value becomes ``[REDACTED:<detector>:<fingerprint>]``. The fingerprint is a
keyed HMAC-SHA256 of the secret, so a rotated secret still shows up as a change, while
the secret itself (even a short password) cannot be recovered without the key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MARKER_PATTERN = re.compile(r"\[REDACTED:[a-z_]+(?::[0-9a-f]{16})?\]")
SECRET_KEY_NAME = re.compile(r"(?i)pass(word|wd|phrase)?|pwd|secret|token|api[_-]?key|private[_-]?key|credentials?")
# Settings *about* secrets (password_encryption, token_type, ...) are evidence, not secrets.
NON_SECRET_KEY_NAME = re.compile(
    r"(?i)(encryption|policy|type|expir\w*|length|enabled|age|last_used\w*|required|reuse\w*|rotation\w*|count|status|id)$"
)
_PLACEHOLDER = re.compile(r"^(\$\{[^}]*\}|\{\{.*\}\}|<[^>]*>|\*+|)$")


@dataclass(frozen=True)
class Detector:
    """A pattern whose ``secret`` group is replaced by a marker."""

    name: str
    pattern: re.Pattern[str]


# Order matters: multi-line and structured secrets first, then generic assignments.
DETECTORS: tuple[Detector, ...] = (
    Detector(
        "private_key",
        re.compile(
            r"(?P<secret>-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----)"
        ),
    ),
    Detector("url_password", re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^:/\s@]+:(?P<secret>[^@\s/]+)@")),
    Detector("aws_access_key_id", re.compile(r"\b(?P<secret>(?:AKIA|ASIA|AGPA|AIDA|AROA)[0-9A-Z]{16})\b")),
    Detector(
        "aws_secret_access_key",
        re.compile(
            r"(?i)aws[\w.-]{0,20}(?:secret|sk)[\w.-]{0,20}[\"']?\s*[:=]\s*[\"']?(?P<secret>[A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])"
        ),
    ),
    Detector(
        "secret_assignment",
        re.compile(
            r"(?i)(?<![\w.:-])(?P<name>[\w.-]*(?:pass(?:word|wd|phrase)?|pwd|secret|token|api[_-]?key|private[_-]?key|credentials?))"
            r"[\"']?\s*(?:[:=]|=>)\s*(?P<quote>[\"']?)(?P<secret>[^\s\"'#,;]+)(?P=quote)"
        ),
    ),
)


@dataclass
class Redactor:
    """Replaces secrets in text and structured values; counts what it replaced, per detector."""

    key: bytes | None = None
    counts: Counter[str] = field(default_factory=Counter)

    def marker(self, detector: str, secret: str) -> str:
        if self.key is None:
            return f"[REDACTED:{detector}]"
        fingerprint = hmac.new(self.key, secret.encode("utf-8"), hashlib.sha256).hexdigest()[:16]
        return f"[REDACTED:{detector}:{fingerprint}]"

    def redact_text(self, text: str) -> str:
        for detector in DETECTORS:
            text = detector.pattern.sub(self._replacer(detector.name), text)
        return text

    def redact_value(self, value: Any, key_name: str = "") -> Any:
        """Redact a JSON-like value: whole values under secret-looking keys, patterns everywhere."""
        if isinstance(value, dict):
            return {key: self.redact_value(item, str(key)) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.redact_value(item, key_name) for item in value]
        if isinstance(value, str):
            if _is_secret_key_name(key_name) and not _is_placeholder(value):
                self.counts["secret_field"] += 1
                return self.marker("secret_field", value)
            return self.redact_text(value)
        return value

    def _replacer(self, detector: str) -> Callable[[re.Match[str]], str]:
        def replace(match: re.Match[str]) -> str:
            secret = match.group("secret")
            if _is_placeholder(secret) or MARKER_PATTERN.fullmatch(secret) or secret.startswith("[REDACTED"):
                return match.group(0)
            self.counts[detector] += 1
            start, end = match.span("secret")
            whole_start = match.start()
            return (
                match.group(0)[: start - whole_start]
                + self.marker(detector, secret)
                + match.group(0)[end - whole_start :]
            )

        return replace


def _is_secret_key_name(name: str) -> bool:
    return bool(name and SECRET_KEY_NAME.search(name) and not NON_SECRET_KEY_NAME.search(name))


def _is_placeholder(value: str) -> bool:
    return bool(_PLACEHOLDER.match(value.strip()))
