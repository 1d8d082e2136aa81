"""Redaction of documents: config-like text in every format the redactor parses, and a planted secret.

A case passes when ``redact_document`` returns text in which no secret name is followed by the
planted secret, or refuses the document with ``UnscannableContent`` (the file is then listed, not
archived). A return that still holds one is counted as unhandled too: for redaction, that is the
bug that matters.
"""

from __future__ import annotations

from hypothesis import strategies as st

from fuzz.harness import FuzzTarget
from soc2_evidence.core.redaction import Redactor, UnscannableContent

PATHS = ["app.yaml", "app.json", "app.toml", "setup.cfg", ".env", "app.properties", "web.config", ".netrc",
         ".pgpass", ".npmrc", "notes.txt", "Dockerfile"]  # fmt: skip
SECRET = "Fz9qWcanaryQ7xL2mP4v"  # noqa: S105 - a fake secret the fuzzer plants
_KEYS = st.sampled_from(["password", "api_key", "token", "db.password", "CLIENT_SECRET", "auth", "name", "value",
                         "kind", "data", "credentials", "max_tokens", "user"])  # fmt: skip
_SEPARATORS = st.sampled_from([": ", "=", " = ", ":", " ", ": |\n  ", ": >\n  ", '": "', "='", " => ", ",\n"])
_NOISE = st.text(alphabet=" \t\n:=\"'{}[]<>/#;,-|&*!\\$%@.", max_size=6)
_FRAGMENT = st.one_of(
    st.tuples(_KEYS, _SEPARATORS, st.just(SECRET), _NOISE).map("".join),
    st.tuples(_KEYS, _SEPARATORS, st.text(max_size=12), _NOISE).map("".join),
    _NOISE,
)
DOCUMENTS = st.tuples(st.sampled_from(PATHS), st.lists(_FRAGMENT, max_size=12).map("\n".join))


class SecretLeft(Exception):
    """The redacted text still holds the planted secret."""


def _redact(payload: tuple[str, str]) -> None:
    path, text = payload
    try:
        out = Redactor(b"fuzz").redact_document(path, text)
    except UnscannableContent:
        return
    left = [written for written in _UNDER_A_SECRET_NAME if written in out]
    if left:
        raise SecretLeft(f"{path}: {left[0]!r} left in {out!r}")


# Only a secret written right after a secret name must go: the fuzzer also plants it under ``name``,
# ``user`` or ``max_tokens``, or after noise, where nothing says it is one.
_UNDER_A_SECRET_NAME = [
    f"{key}{separator}{SECRET}"
    for key in ("password", "api_key", "token", "CLIENT_SECRET")
    for separator in (": ", "=", " = ")
]


TARGETS = [FuzzTarget("redaction.redact_document", DOCUMENTS, _redact)]
