"""Every error the pipeline raises on purpose, in one place.

Messages name the source, store or file at fault and what was wrong, so a one-line
report is enough for an operator to act on.
"""


class EvidenceError(Exception):
    """Base class of the pipeline's own errors."""


class ConfigError(EvidenceError, ValueError):
    """The YAML configuration is missing, unreadable or invalid."""


class StoreConfigError(EvidenceError):
    """A store URL or bucket cannot hold evidence safely; the store fails closed."""


class ObjectExistsError(EvidenceError):
    """A write would overwrite an existing evidence object."""


class CollectorError(EvidenceError):
    """A collector could not read its source."""


class ArchiveError(EvidenceError):
    """A run could not be archived completely."""


class DataQualityError(EvidenceError):
    """Evidence was archived but is incomplete or malformed; the run is marked failed."""
