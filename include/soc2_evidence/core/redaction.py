"""Secret redaction applied to every piece of evidence before it is written anywhere.

A redacted value becomes ``[REDACTED:<detector>:<fingerprint>]``. The fingerprint is a
keyed HMAC-SHA256 of the secret, so a rotated secret still shows up as a change, while
the secret itself (even a short password) cannot be recovered without the key.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MARKER_PATTERN = re.compile(r"\[REDACTED:[a-z_]+(?::[0-9a-f]{16})?\]")
# A key name containing one of these words names a secret (``db_password``, ``SECRET_KEY``) ...
_SENSITIVE_WORDS = r"pass(?:word|wd|phrase|code)?s?(?![a-z])|pwd|secret|token|api[_-]?key|private[_-]?key|credential"
SECRET_KEY_NAME = re.compile(rf"(?i){_SENSITIVE_WORDS}")
# ... unless it names a setting *about* secrets (password_encryption, token_type, ...): that is evidence.
NON_SECRET_KEY_NAME = re.compile(
    r"(?i)(encryption|policy|type|expir\w*|length|enabled|age|last_used\w*|required|reuse\w*|rotation\w*|count|status|id"
    r"|variable|file|path|url|uri|endpoint|arn|name)$"
)
# ${VAR:-default} and ${VAR=default} are not placeholders: the default is a literal, maybe a password.
_PLACEHOLDER = re.compile(r"^(\$\{[^}=+-]*\}|\{\{.*\}\}|<[^>]*>|\*+|)$")


@dataclass(frozen=True)
class Detector:
    """A pattern whose matched ``secret*`` group is replaced by a marker.

    Alternatives (quoted or not) each have their own ``secret*`` group, since a group name
    cannot repeat. A ``name`` group, where present, must pass the same test as a key name in
    structured values, so text and structured redaction agree on what is a secret.
    """

    name: str
    pattern: re.Pattern[str]

    @functools.cached_property
    def secret_groups(self) -> tuple[str, ...]:
        return tuple(group for group in self.pattern.groupindex if group.startswith("secret"))


# Order matters: multi-line and structured secrets first, then generic assignments.
DETECTORS: tuple[Detector, ...] = (
    # The body stops at the next BEGIN: a BEGIN without an END is then not rescanned to the end of the text.
    Detector(
        "private_key",
        re.compile(
            r"(?P<secret>-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----(?:[^-]|-(?!----BEGIN ))*?"
            r"-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----)"
        ),
    ),
    # Anchored on "://" (not on the scheme) so a long run of letters is not rescanned from each position;
    # the user may be empty, as in redis://:password@host.
    Detector("url_password", re.compile(r"(?<=[a-zA-Z0-9+.-])://[^:/\s@]*:(?P<secret>[^@\s/]+)@")),
    Detector("aws_access_key_id", re.compile(r"\b(?P<secret>(?:AKIA|ASIA|AGPA|AIDA|AROA)[0-9A-Z]{16})\b")),
    Detector(
        "aws_secret_access_key",
        re.compile(
            r"(?i)aws[\w.-]{0,20}(?:secret|sk)[\w.-]{0,20}[\"']?\s*[:=]\s*[\"']?(?P<secret>[A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])"
        ),
    ),
    # The look-ahead finds a secret word anywhere in the name (SECRET_KEY, secret_key_base), then the
    # possessive ``++`` takes the whole name without backtracking. A quoted value ends at its closing
    # quote; an unquoted one runs over words to the end of the line (YAML allows spaces), but stops
    # at ',', ';', a " #" comment and a word that starts another assignment ("a=1 password=x").
    # Every repetition is over disjoint characters: matching stays linear.
    Detector(
        "secret_assignment",
        re.compile(
            rf"(?i)(?<![\w.:-])(?P<name>(?=[\w.-]*?(?:{_SENSITIVE_WORDS}))[\w.-]++)[\"']?\s*(?:=>|[:=])\s*"
            r"(?:\"(?P<secret_double>(?:[^\"\\\n]|\\.)*)\""
            r"|'(?P<secret_single>(?:[^'\n]|'')*)'"
            r"|(?P<secret>[^\s#,;][^\s,;]*(?:[ \t]+(?![\w.-]++[ \t]*(?:=>|[:=]))[^\s#,;][^\s,;]*)*))"
        ),
    ),
)

# Every detector's match, and every secret key name, contains one of these: a key header, a URL's
# "://user:secret@", an AWS key prefix, "aws" or a sensitive word. Text without any cannot hold a
# secret. JSON escaping never removes one (nor puts a letter after a word), so the check also
# holds for a value's canonical JSON.
_CANDIDATE = re.compile(rf"-----BEGIN |://[^/\s@]*@|AKIA|ASIA|AGPA|AIDA|AROA|(?i:aws|{_SENSITIVE_WORDS})")
# The same test on lowered ASCII text, where lowering is exact and a case-sensitive pattern is many
# times faster; screened first by what each alternative needs, cheapest first: substrings (``in``
# is the fastest scan), one pattern anchored on the "p" of pass/pwd/private/api (one scan, not
# four), and the AWS key id prefixes in upper case, as the detector needs them.
_CANDIDATE_ASCII = re.compile(rf"-----begin |://[^/\s@]*@|akia|asia|agpa|aida|aroa|aws|{_SENSITIVE_WORDS}")
_SCREEN = ("-----begin ", "@", "aws", "secret", "token", "credential")
_SCREEN_P_WORDS = re.compile(r"p(?:ass|wd|rivate|(?<=ap)i)")
_AWS_KEY_ID_PREFIX = re.compile("A(?:KIA|SIA|GPA|IDA|ROA)")


def may_hold_secret(text: str) -> bool:
    """False when redaction would certainly change nothing in ``text`` (or in a value serialised as ``text``)."""
    if text.isascii():
        lowered = text.lower()
        screened = (
            any(word in lowered for word in _SCREEN)
            or _SCREEN_P_WORDS.search(lowered) is not None
            or _AWS_KEY_ID_PREFIX.search(text) is not None
        )
        return screened and _CANDIDATE_ASCII.search(lowered) is not None
    return _CANDIDATE.search(text) is not None


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
        if not may_hold_secret(text):
            return text
        for detector in DETECTORS:
            text = detector.pattern.sub(self._replacer(detector), text)
        return text

    def redact_value(self, value: Any, key_name: str = "") -> Any:
        """Redact a JSON-like value: everything under secret-looking keys, patterns everywhere else."""
        if _is_secret_key_name(key_name):
            return self._redact_secret(value)
        if isinstance(value, dict):
            return {key: self.redact_value(item, str(key)) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.redact_value(item, key_name) for item in value]
        if isinstance(value, str):
            return self.redact_text(value)
        return value

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
        if _is_placeholder(secret) or MARKER_PATTERN.fullmatch(secret):
            return value
        self.counts["secret_field"] += 1
        return self.marker("secret_field", secret)

    def _replacer(self, detector: Detector) -> Callable[[re.Match[str]], str]:
        def replace(match: re.Match[str]) -> str:
            group = next(group for group in detector.secret_groups if match[group] is not None)
            if "name" in detector.pattern.groupindex and not _is_secret_key_name(match["name"]):
                # A setting about secrets is kept, but what the match took as its value may hold
                # a secret assignment (the next line: "token_rotation:\n  secret: x"): search it.
                value_start = match.start(group) - match.start()
                return match[0][:value_start] + detector.pattern.sub(self._replacer(detector), match[0][value_start:])
            secret = match[group]
            if _is_placeholder(secret) or MARKER_PATTERN.fullmatch(secret) or secret.startswith("[REDACTED"):
                return match[0]
            self.counts[detector.name] += 1
            start, end = match.span(group)
            whole_start = match.start()
            return match[0][: start - whole_start] + self.marker(detector.name, secret) + match[0][end - whole_start :]

        return replace


@functools.lru_cache(maxsize=4096)
def _is_secret_key_name(name: str) -> bool:
    """Cached (bounded): structured evidence repeats the same few key names in every record."""
    return bool(name and SECRET_KEY_NAME.search(name) and not NON_SECRET_KEY_NAME.search(name))


def _is_placeholder(value: str) -> bool:
    return bool(_PLACEHOLDER.match(value.strip()))
