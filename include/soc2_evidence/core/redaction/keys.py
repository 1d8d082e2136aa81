"""Which key names name a secret, on word boundaries, and which values are only placeholders.

A key is split into words (snake, kebab, dots, spaces and camelCase): ``max_tokens`` is
``max tokens`` and ``_authToken`` is ``auth token``. Matching words, not substrings, keeps
``tokenizer``, ``secretary_email``, ``compass_heading`` and ``bypass_cache`` readable.
"""

from __future__ import annotations

import functools
import re

_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
# A word that names a secret by itself.
SECRET_WORDS = frozenset(
    [
        "password",
        "passwords",
        "passwd",
        "tokens",
        "pwd",
        "pw",
        "pass",
        "passphrase",
        "passcode",
        "secret",
        "secrets",
        "token",
        "credential",
        "credentials",
        "creds",
        "auth",
        "authorization",
        "apikey",
        "privatekey",
        "secretkey",
        "accesskey",
        "requirepass",
        "masterauth",
        "pgpass",
        "sig",
        "pin",
        "otp",
        "cookie",
    ]
)
# A word ending in one of these names a secret too: dbpassword, authtoken, identitytoken, clientsecret.
SECRET_SUFFIXES = (
    "password",
    "passwords",
    "passwd",
    "pw",
    "passphrase",
    "secret",
    "secrets",
    "token",
    "tokens",
    "apikey",
    "privatekey",
    "secretkey",
)
# "key" names a secret after a qualifier (api key, access-key, STRIPE_KEY), but not after these.
# Identifiers of records, rows and objects (record_key, issue_key, s3_object_key), public halves, other kinds.
_IDENTIFIER_QUALIFIERS = (
    "primary foreign sort partition hash range cache idempotency lookup shard object row unique composite"
    " dedup dedupe group map dict index sequence order cluster tag label hot short translation i18n locale message"
    " field column attribute metric config setting env environment redis s3 bucket kms ordering join natural"
    " surrogate record item entry event document doc cursor page pagination search query dictionary issue project"
    " ticket epic board sprint space repo repository branch commit parent child node namespace resource element"
    " source target display business external public pub ssh gpg pgp host"
    " backup dump snapshot file blob archive manifest version restore evidence storage"
)
NON_SECRET_KEY_QUALIFIERS = frozenset(_IDENTIFIER_QUALIFIERS.split())
# A last word that makes the key a setting *about* a secret: evidence, not a secret.
DESCRIPTOR_WORDS = frozenset(
    [
        "type",
        "types",
        "ttl",
        "seconds",
        "secs",
        "minutes",
        "mins",
        "hours",
        "days",
        "age",
        "expiry",
        "expires",
        "expiration",
        "expire",
        "expired",
        "lifetime",
        "length",
        "len",
        "size",
        "min",
        "max",
        "policy",
        "policies",
        "enabled",
        "enable",
        "disabled",
        "required",
        "require",
        "scopes",
        "scope",
        "encryption",
        "algorithm",
        "algorithms",
        "algo",
        "rotation",
        "rotate",
        "reuse",
        "prevention",
        "count",
        "status",
        "state",
        "id",
        "ids",
        "name",
        "names",
        "file",
        "files",
        "path",
        "paths",
        "dir",
        "url",
        "uri",
        "endpoint",
        "endpoints",
        "arn",
        "header",
        "variable",
        "var",
        "env",
        "field",
        "fields",
        "param",
        "prefix",
        "suffix",
        "format",
        "regex",
        "pattern",
        "location",
        "mode",
        "method",
        "methods",
        "version",
        "source",
        "provider",
        "issuer",
        "audience",
        "strength",
        "complexity",
        "hint",
        "reset",
        "at",
        "used",
        "date",
        "time",
        "timeout",
        "interval",
        "limit",
        "ref",
        "reference",
        "kind",
        "label",
        "description",
        "help",
        "store",
        "backend",
        "storage",
        "manager",
        "command",
        "cmd",
        "mount",
        "mounts",
        "lookup",
        "ui",
        "flow",
        "grant",
        "strategy",
        "validation",
        "verification",
        "retention",
        "history",
        "attempts",
        "retries",
        "lockout",
        "domain",
        "secure",
        "samesite",
        "httponly",
        "scheme",
        "schemes",
        "realm",
        "protocol",
        "mechanism",
        "plugin",
        "server",
        "host",
        "hosts",
        "port",
        "user",
        "username",
        "email",
        "login",
        "tenant",
    ]
)
# A first word that makes the key a setting about secrets: max_tokens, use_password, require_auth.
QUALIFIER_WORDS = frozenset(
    [
        "max",
        "min",
        "num",
        "number",
        "use",
        "enable",
        "disable",
        "require",
        "allow",
        "is",
        "has",
        "no",
        "skip",
        "show",
        "hide",
    ]
)


@functools.lru_cache(maxsize=8192)
def is_secret_key_name(name: str) -> bool:
    """Cached (bounded): structured evidence repeats the same few key names in every record."""
    words = [word.lower() for word in _WORDS.findall(name)]
    while words and words[-1].isdigit():  # PuTTY-User-Key-File-3, password2: the number says nothing
        words.pop()
    if not words or words[-1] in DESCRIPTOR_WORDS or words[0] in QUALIFIER_WORDS or "per" in words:
        return False
    for index, word in enumerate(words):
        if word in SECRET_WORDS or word.endswith(SECRET_SUFFIXES):
            return True
        if word in ("key", "keys") and index > 0 and words[index - 1] not in NON_SECRET_KEY_QUALIFIERS:
            return True
    return False


# ${VAR} and $VAR, {{ jinja }}, <angle> (and <%= erb %>), %(interpolation)s, %WINDOWS%, stars, dots,
# the words people write instead of a value, and file paths (a reference to where the secret is kept).
# ${VAR:-default} is not a placeholder: its default is a literal, maybe a password.
_PLACEHOLDER = re.compile(
    r"^(?:\$\{\{.*\}\}|\$\{[^}=+-]*\}|\$[A-Z_][A-Z0-9_]*|\{\{.*\}\}|<[^>]*>|%\([\w.-]+\)[sd]|%[A-Z_][A-Z0-9_]*%|\*+|\.{3}"
    r"|(?i:x{3,}|changeme|change[-_]?me|change[-_]?it|replace[-_]?me|todo|tbd|null|none|nil|undefined|redacted"
    r"|your[-_ ][\w -]*|my[-_ ]?(?:password|secret|token))|\[[A-Z_ -]*\]"
    r"|(?:~|\.{1,2})?/[\w.@-]+(?:/[\w.@-]+)+/?|[A-Za-z]:\\[\w .\\-]+|)$"
)


_BOOLEAN_OR_NULL = re.compile(r"(?i)^(?:true|false|yes|no|on|off|null|none|nil|~)$")


def is_placeholder(value: str) -> bool:
    """A value that reveals nothing: a placeholder, a boolean, a null or nothing at all."""
    value = value.strip()
    return _PLACEHOLDER.match(value) is not None or _BOOLEAN_OR_NULL.match(value) is not None


def names_a_secret_itself(name: str) -> bool:
    """The key's last word is a secret (``password``, ``pin``, ``db_password``), not a key of something
    (``access_keys``): a number under it is a secret, where under ``access_keys`` it is a count."""
    words = [word.lower() for word in _WORDS.findall(name)]
    return bool(words) and (words[-1] in SECRET_WORDS or words[-1].endswith(SECRET_SUFFIXES))


def names_a_collection_of_keys(name: str) -> bool:
    """``access_keys``, ``ssh_keys``: a plural "keys" names a list of key *records* (IAM's access keys with
    their status and dates), whose fields are judged by their own names, not one secret."""
    words = [word.lower() for word in _WORDS.findall(name)]
    return bool(words) and words[-1] == "keys"
