"""Every error the pipeline raises on purpose, in one place, and the one way to describe any error.

Messages name the source, store or file at fault and what was wrong, so a one-line
report is enough for an operator to act on.

Permanent or transient: an error either fixes itself if the same work is tried again later
(a network failure, an HTTP 5xx, 408 or 429, throttling) or it does not (a bad configuration,
an unreadable payload, a 404, a missing repository path or ref, a denied permission).
Only :class:`TransientError` is transient. Every other :class:`EvidenceError`, including a
plain :class:`CollectorError`, is permanent: retrying it only delays the alert (a Jira 404
used to retry for 4 min 24 s). The Airflow edge (``orchestration.failures``) turns permanent
errors into a failure without retries and lets transient ones retry.
"""

from __future__ import annotations

from collections.abc import Iterable

from soc2_evidence.core.redaction import Redactor

DESCRIBE_LIMIT = 300  # characters: a log line, an XCom value, a manifest reason


class EvidenceError(Exception):
    """Base class of the pipeline's own errors."""


class PermanentError(EvidenceError):
    """Trying again later cannot help: a person must change the configuration, a permission or the source."""


class TransientError(EvidenceError):
    """Trying again later may help: the network, an HTTP 5xx, 408 or 429, or throttling."""


class ConfigError(PermanentError, ValueError):
    """The YAML configuration is missing, unreadable or invalid."""


class EncodingError(PermanentError, ValueError):
    """A value cannot be written as canonical JSON evidence: NaN, Infinity, a naive time, or nested too deeply."""


class StoreConfigError(EvidenceError):
    """A store URL or bucket cannot hold evidence safely; the store fails closed."""


class StoreUnavailableError(TransientError):
    """The store did not answer, or answered with a 5xx or throttling, after the client's own retries."""


class ObjectExistsError(EvidenceError):
    """A write would overwrite an existing evidence object that holds other content."""


class CollectorError(EvidenceError):
    """A collector could not read its source; permanent unless it is also a :class:`TransientError`."""


class PayloadError(CollectorError, PermanentError):
    """A source returned a record that does not parse or does not have its documented shape."""


class TransientCollectorError(CollectorError, TransientError):
    """A collector could not read its source for now (network, 5xx, throttling) and gave up its own retries."""


class ArchiveError(EvidenceError):
    """A run could not be archived completely."""


class DataQualityError(EvidenceError):
    """Evidence was archived but is incomplete or malformed; the run is marked failed."""


def is_transient(error: BaseException) -> bool:
    """True only for a :class:`TransientError`: everything else of ours is permanent (see the module doc)."""
    return isinstance(error, TransientError)


def is_permanent(error: BaseException) -> bool:
    """True for every error of ours that is not transient; False for bugs (which keep their traceback)."""
    return isinstance(error, EvidenceError) and not is_transient(error)


def describe(error: BaseException, *, known_secrets: Iterable[str | None] = ()) -> str:
    """An error as one line for people and logs: the first non-empty line, redacted and capped.

    Library errors (botocore, google, psycopg, git) put request details, URLs with credentials
    or a whole response on later lines; the first line says what went wrong. A botocore
    ``ClientError`` is given as ``Code: Message``, without the "An error occurred ..." preamble.
    ``known_secrets`` (a connection's password) are removed even where no pattern would see them.
    """
    text = _aws_client_error_text(error) or next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    for secret in known_secrets:
        if secret:
            text = text.replace(str(secret), "[REDACTED:connection_password]")
    text = Redactor().redact_text(text) or type(error).__name__
    return text if len(text) <= DESCRIBE_LIMIT else text[: DESCRIBE_LIMIT - 3] + "..."


def _aws_client_error_text(error: BaseException) -> str:
    """``Code: Message`` of a botocore ClientError (recognised by its response, so core does not import botocore)."""
    response = getattr(error, "response", None)
    detail = response.get("Error") if isinstance(response, dict) else None
    if not isinstance(detail, dict) or not detail:
        return ""
    message = next((line.strip() for line in str(detail.get("Message") or "").splitlines() if line.strip()), "")
    return f"{detail.get('Code', 'error')}: {message}".rstrip(": ")
