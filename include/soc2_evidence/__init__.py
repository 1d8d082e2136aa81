"""soc2-evidence: nightly SOC 2 evidence, validated and archived to immutable storage."""

__version__ = "0.1.0"
