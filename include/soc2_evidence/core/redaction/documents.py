"""Structured redaction: parse a file by its format and find every value under a sensitive key.

Parsing finds *what* is secret (nested maps, lists, block scalars, continued lines, Kubernetes
Secrets); the values are then replaced where they stand in the original text, so an auditor
reads the file as it was, with only the secrets replaced. A file of a known format that does not
parse, or a secret value that cannot be found again in the text, raises
:class:`UnscannableContent`: the caller lists the file and does not archive it.
"""

from __future__ import annotations

import configparser
import itertools
import json
import re
import tomllib
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterator
from pathlib import PurePosixPath
from typing import Any
from xml.sax.saxutils import escape as xml_escape

import yaml

from soc2_evidence.core.redaction.detectors import Candidates
from soc2_evidence.core.redaction.keys import is_placeholder, is_secret_key_name


class UnscannableContent(Exception):
    """Content that cannot be redacted with confidence: it must not be archived. ``reason`` is one secret-free line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# (key the value was found under, the value as parsed, where it stands if the parser says so). Without
# a span, the value is searched for after its key (:func:`locations`).
Secret = tuple[str, str, tuple[int, int] | None]


def _walk(tree: Any, key: str = "", under_secret: bool = False) -> Iterator[Secret]:
    """Every scalar under a sensitive key, at any depth, with the nearest key above it."""
    if isinstance(tree, dict):
        # Kubernetes Secret: every entry of data/stringData is secret, whatever its name.
        kubernetes_secret = tree.get("kind") == "Secret"
        pair_secret = pair_is_secret(tree)
        for name, value in tree.items():
            name = str(name)
            secret = (
                under_secret
                or is_secret_key_name(name)
                or (pair_secret and name.lower() in PAIR_VALUES)
                or (kubernetes_secret and name in ("data", "stringData"))
            )
            yield from _walk(value, name, secret)
    elif isinstance(tree, list):
        for item in tree:
            yield from _walk(item, key, under_secret)
    elif under_secret and tree is not None and not isinstance(tree, bool):
        value = str(tree)
        if not is_placeholder(value):
            yield key, value, None


# A record naming a setting and giving its value: {"name": "db_password", "value": "x"} (AWS tags as
# Key/Value, PostgreSQL settings as name/setting, XML <add key= value=>).
_PAIR_NAMES = ("name", "key")
PAIR_VALUES = frozenset({"value", "setting", "default", "reset_val", "boot_val"})


def pair_is_secret(tree: dict[Any, Any]) -> bool:
    names = [value for key, value in tree.items() if str(key).lower() in _PAIR_NAMES and isinstance(value, str)]
    return any(is_secret_key_name(name) for name in names) and any(str(k).lower() in PAIR_VALUES for k in tree)


_YamlLoader = getattr(yaml, "CBaseLoader", yaml.BaseLoader)


def _yaml(text: str) -> Iterator[Secret]:
    """YAML composed, not constructed: nodes carry where each value stands (so a value is replaced
    exactly there, block scalars whole), any tag is accepted (CloudFormation's ``!Ref``, Ansible's
    ``!vault``), and every scalar stays the text it was written as."""
    try:
        documents = list(yaml.compose_all(text, Loader=_YamlLoader))
    except yaml.YAMLError as error:
        raise UnscannableContent(f"not valid YAML ({_where(error)})") from None
    for document in documents:
        if document is not None:
            yield from _walk_node(text, document)


def _walk_node(text: str, node: yaml.Node, key: str = "", under_secret: bool = False) -> Iterator[Secret]:
    if isinstance(node, yaml.MappingNode):
        pairs = [(name.value if isinstance(name, yaml.ScalarNode) else "", value) for name, value in node.value]
        kubernetes_secret = pair_secret = False
        if any(name == "kind" or name.lower() in _PAIR_NAMES for name, _ in pairs):  # most mappings are neither
            scalars = {name: value.value for name, value in pairs if isinstance(value, yaml.ScalarNode)}
            kubernetes_secret = scalars.get("kind") == "Secret"
            pair_secret = pair_is_secret(scalars)
        for name, value in pairs:
            secret = (
                under_secret
                or is_secret_key_name(name)
                or (pair_secret and name.lower() in PAIR_VALUES)
                or (kubernetes_secret and name in ("data", "stringData"))
            )
            yield from _walk_node(text, value, name, secret)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from _walk_node(text, item, key, under_secret)
    elif isinstance(node, yaml.ScalarNode) and under_secret and not is_placeholder(node.value):
        yield key, node.value, _scalar_span(text, node)


def _scalar_span(text: str, node: yaml.ScalarNode) -> tuple[int, int]:
    """Where a scalar's value stands: inside its quotes; a block scalar from its first line's
    first character (its indicator and indentation stay) to its last non-blank character."""
    start, end = node.start_mark.index, node.end_mark.index
    if node.style in ("'", '"'):
        return start + 1, end - 1
    if node.style in ("|", ">"):
        start = text.index("\n", start) + 1
        start += len(text[start:end]) - len(text[start:end].lstrip())
    return start, start + len(text[start:end].rstrip())


def _json(text: str) -> Iterator[Secret]:
    try:
        tree = json.loads(text, parse_int=str, parse_float=str, parse_constant=str)
    except ValueError as error:
        raise UnscannableContent(f"not valid JSON (line {getattr(error, 'lineno', '?')})") from None
    yield from _walk(tree)


def _toml(text: str) -> Iterator[Secret]:
    try:
        tree = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise UnscannableContent(f"not valid TOML ({str(error).split('(')[-1].rstrip(')')})") from None
    yield from _walk(tree)


def _ini(text: str) -> Iterator[Secret]:
    parser = configparser.ConfigParser(interpolation=None, strict=False, allow_no_value=True, delimiters=("=", ":"))
    parser.optionxform = str  # type: ignore[assignment,method-assign] - keep the key as written
    try:
        try:
            parser.read_string(text)
        except configparser.MissingSectionHeaderError:
            parser.read_string("[top]\n" + text)  # keys before any section, as in .npmrc or setup.cfg parts
    except (configparser.Error, AttributeError) as error:
        # AttributeError: configparser's own failure on an indented line after a key without a value.
        raise UnscannableContent(f"not valid INI ({type(error).__name__})") from None
    for section in parser.sections():
        for name, value in parser.items(section, raw=True):
            yield from _walk({name: value})


# NAME=value (after an optional "export"): unquoted up to a " #" comment, 'single' or "double"
# quoted (a double-quoted value may span lines). Values are yielded as written, escapes and all,
# so they are found verbatim in the text.
_ENV_ENTRY = re.compile(
    r"[ \t]*(?:export[ \t]+)?(?P<key>[A-Za-z_][\w.-]*)[ \t]*=[ \t]*"
    r"(?:\"(?P<double>(?:[^\"\\]|\\.)*)\"|'(?P<single>[^']*)'|(?P<plain>[^\n]*?))"
    r"(?:[ \t]+#[^\n]*)?[ \t]*(?:\n|\Z)"
)
_ENV_BLANK = re.compile(r"[ \t]*(?:#[^\n]*)?(?:\n|\Z)")


def _env(text: str) -> Iterator[Secret]:
    position = 0
    while position < len(text):
        blank = _ENV_BLANK.match(text, position)
        if blank and blank.end() > position:
            position = blank.end()
            continue
        entry = _ENV_ENTRY.match(text, position)
        if entry is None or entry.end() == position:
            raise UnscannableContent(f"not a .env file: line {text.count(chr(10), 0, position) + 1} is not NAME=value")
        value = next(group for group in (entry["double"], entry["single"], entry["plain"]) if group is not None)
        yield from _walk({entry["key"]: value})
        position = entry.end()


_PROPERTY = re.compile(r"^[ \t\f]*(?P<key>(?:[^\s=:\\]|\\.)+)[ \t\f]*[=: \t\f][ \t\f]*(?P<value>.*)$", re.DOTALL)


def _properties(text: str) -> Iterator[Secret]:
    """Java .properties: ``key = value``, ``key: value`` or ``key value``; a trailing '\\' continues the line."""
    for line in _logical_lines(text):
        match = _PROPERTY.match(line)
        if match:
            yield from _walk({match["key"]: match["value"]})


def _logical_lines(text: str) -> Iterator[str]:
    """Physical lines joined where one ends in an odd number of backslashes, newlines kept."""
    pending = ""
    for line in text.splitlines(keepends=True):
        if not pending and re.match(r"[ \t\f]*[#!]", line):
            continue
        stripped = line.rstrip("\r\n")
        pending += line
        if (len(stripped) - len(stripped.rstrip("\\"))) % 2 == 0:
            yield pending.rstrip("\r\n")
            pending = ""
    if pending:
        yield pending


def _xml(text: str) -> Iterator[Secret]:
    try:
        root = ElementTree.fromstring(text)  # noqa: S314 - expat expands no external entities
    except ElementTree.ParseError as error:
        raise UnscannableContent(f"not valid XML (line {error.position[0]})") from None
    for element in root.iter():
        tag = element.tag.rsplit("}", 1)[-1] if isinstance(element.tag, str) else ""
        attributes = {name.rsplit("}", 1)[-1]: value for name, value in element.attrib.items()}
        named = next((attributes[k] for k in ("key", "name") if k in attributes), "")
        if element.text and element.text.strip() and (is_secret_key_name(tag) or is_secret_key_name(named)):
            yield from _walk({tag: element.text.strip()}, under_secret=True)
        for name, value in attributes.items():
            if is_secret_key_name(name) or (name in PAIR_VALUES and is_secret_key_name(named)):
                yield from _walk({name: value}, under_secret=True)


def _netrc(text: str) -> Iterator[Secret]:
    tokens = text.split()
    for name, value in itertools.pairwise(tokens):
        if name in ("password", "passwd", "account"):
            yield from _walk({name: value}, under_secret=True)


def _pgpass(text: str) -> Iterator[Secret]:
    """``host:port:database:user:password``, ':' and '\\' escaped with '\\'; the password is the rest of the line."""
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = re.split(r"(?<!\\):", line, maxsplit=4)
        if len(fields) < 5:
            raise UnscannableContent(f"not a .pgpass file: line {number} has fewer than 5 fields")
        yield from _walk({"password": fields[4]})


def _npmrc(text: str) -> Iterator[Secret]:
    """``//registry/:_authToken=x``: the key's last ':' part names the setting."""
    for line in text.splitlines():
        name, equals, value = line.partition("=")
        if equals and not line.lstrip().startswith(("#", ";")):
            key = name.strip().rsplit(":", 1)[-1]
            yield from _walk({key: value.strip().strip("\"'")})


def _where(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    return f"line {mark.line + 1}" if mark is not None else type(error).__name__


Parser = Callable[[str], Iterator[Secret]]
_BY_SUFFIX: dict[str, Parser] = {
    ".yaml": _yaml,
    ".yml": _yaml,
    ".json": _json,
    ".dockerconfigjson": _json,
    ".toml": _toml,
    ".ini": _ini,
    ".cfg": _ini,
    ".pypirc": _ini,
    ".gitconfig": _ini,
    ".env": _env,
    ".properties": _properties,
    ".xml": _xml,
    ".config": _xml,
    ".csproj": _xml,
    ".props": _xml,
    ".netrc": _netrc,
    ".pgpass": _pgpass,
    ".npmrc": _npmrc,
    ".yarnrc": _npmrc,
}
# Formats whose secrets stand under no sensitive word (.pgpass: the fifth field), so they are always parsed.
KEYWORDLESS_FORMATS: frozenset[Parser] = frozenset({_pgpass})
_BY_NAME: dict[str, Parser] = {"_netrc": _netrc, "netrc": _netrc, "pgpass": _pgpass, ".env": _env, "npmrc": _npmrc}


_KUBERNETES_SECRET = re.compile(r"(?m)^[ \t]*[\"']?kind[\"']?[ \t]*:[ \t]*[\"']?Secret\b")


# A YAML line the detectors redact as well as parsing would: "name: value" with the value on the line.
# Not a pair's name ("- name: DB_PASSWORD" is followed by its value), nor a value that goes on below.
# A plain value holds none of what ends a detector's value early (';', '=', ': '): YAML reads
# "password: a;b" and "password: a b=c" whole.
_INLINE_YAML = re.compile(
    r"[ \t]*(?:-[ \t]+)?(?!(?:name|key|Name|Key)[ \t]*:)[\w.$@-]+[ \t]*:[ \t]+"
    r"(?:[^\s|>&*!{\[\"'#;=](?:(?!: )[^;=\n])*|\"[^\"\n]*\"[ \t]*(?:#[^\n]*)?|'[^'\n]*'[ \t]*(?:#[^\n]*)?)"
)


def needs_parsing(parser: Parser, text: str, found: Candidates) -> bool:
    """Whether parsing ``text`` could find a secret the detectors would not: a name in it names a secret
    (or it is a Kubernetes Secret) and, for YAML, some such value is not a plain one on its line (a
    nested map or list, a block scalar, a pair). Parsing, YAML above all, costs far more than this look."""
    if parser in KEYWORDLESS_FORMATS or _KUBERNETES_SECRET.search(text):
        return True
    named = [(start, end) for start, end, named in found.regions if named]
    if parser not in (_yaml, _sniffed_yaml):
        return bool(named)
    return any(not _inline_yaml(text, start, end) for start, end in named)


def _inline_yaml(text: str, start: int, end: int) -> bool:
    lines = text[start:end].split("\n")
    if not all(_INLINE_YAML.fullmatch(line) for line in lines):
        return False
    following = text[end + 1 : text.find("\n", end + 1) if text.find("\n", end + 1) >= 0 else len(text)]
    indent = len(lines[-1]) - len(lines[-1].lstrip(" \t"))
    return not following.strip() or len(following) - len(following.lstrip(" \t")) <= indent  # no continuation


# Suffixes of templates and copies: values.yaml.j2 is YAML with Jinja in it, app.env.example an .env.
_TEMPLATE_SUFFIXES = frozenset(
    {".j2", ".jinja", ".jinja2", ".tpl", ".tmpl", ".template", ".example", ".sample", ".dist", ".orig", ".bak"}
)
_YAML_SHAPE = re.compile(r"(?m)^[ \t]*(?:-[ \t]+)?[\w.\"'-]+[ \t]*:(?:[ \t]|$)")


def parser_for(path: str, text: str) -> Parser | None:
    """The format of ``path``: by name, then by suffix (``.env.prod`` is .env), then by content.

    A template or copy of a known format (``values.yaml.j2``), or a file whose content merely looks
    like JSON, INI or YAML, is parsed only if it parses: it was never promised to be that format, and
    the detectors still run over it. Files of no known format and no such look get the detectors only.
    """
    name = PurePosixPath(path).name.lower()
    known = _known_format(name)
    if known is not None:
        return known
    suffix = PurePosixPath(name).suffix
    inner = _known_format(name.removesuffix(suffix)) if suffix in _TEMPLATE_SUFFIXES else None
    if inner is _yaml or (inner is None and _YAML_SHAPE.search(text) and not text.lstrip().startswith(("{", "["))):
        return _sniffed_yaml
    if inner is not None or text.lstrip().startswith(("{", "[")):
        return _sniffed
    return None


def _known_format(name: str) -> Parser | None:
    if name in _BY_NAME or name in _BY_SUFFIX:  # dot files (.pypirc, .pgpass) have no suffix of their own
        return _BY_NAME.get(name) or _BY_SUFFIX[name]
    if name.startswith(".env.") or name.endswith(".env"):
        return _env
    return _BY_SUFFIX.get(PurePosixPath(name).suffix)


def _sniffed(text: str) -> Iterator[Secret]:
    """Content that may be JSON, INI, .env or properties: secrets if it parses as one, else none."""
    for parser in (_json, _ini, _env, _properties):
        try:
            return iter(list(parser(text)))
        except UnscannableContent:
            continue
    return iter(())


def _sniffed_yaml(text: str) -> Iterator[Secret]:
    """Content that looks like YAML (or a YAML template): secrets if it parses, else none."""
    try:
        return iter(list(_yaml(text)))
    except UnscannableContent:
        return iter(())


def secrets_in_value(value: str) -> list[Secret]:
    """Secrets in a string that holds a JSON or YAML document (a policy, a ticket field); [] if it holds none."""
    stripped = value.lstrip()
    parser = _json if stripped.startswith(("{", "[")) else _yaml if _YAML_MAPPING_LINE.search(stripped) else None
    try:
        return list(parser(value)) if parser else []
    except UnscannableContent:
        return []  # not a document after all: the detectors still run over it


_YAML_MAPPING_LINE = re.compile(r"\n[ \t]*[\w.-]+[ \t]*:(?:[ \t]|$)", re.MULTILINE)


def locations(text: str, key: str, value: str, taken: set[int]) -> list[tuple[int, int]] | None:
    """Where ``value`` (found under ``key``) stands in ``text``, or None if it cannot be found.

    The value is searched after an occurrence of its key, as written, then escaped as JSON or XML
    would write it, then line by line (block scalars, continued lines), then word by word (folded
    scalars). Searching after the key replaces only this value, not the same word elsewhere;
    ``taken`` (starts of values already located) lets a repeated key and value find its own place.
    """
    for pieces in _spellings(value):
        if not all(pieces):
            continue
        starts = [match.end() for match in re.finditer(re.escape(key), text)] if key else [0]
        for start in starts or [0]:
            spans, cursor = [], start
            for piece in pieces:
                end = cursor + 4096 + len(piece)
                found = first = text.find(piece, cursor, end)
                while found in taken:  # the same key and value twice: each finds its own place
                    found = text.find(piece, found + 1, end)
                found = found if found >= 0 else first  # or the place already found, if there is no other
                if found < 0:
                    break
                spans.append((found, found + len(piece)))
                cursor = found + len(piece)
            else:
                return spans
    return None


def _spellings(value: str) -> Iterator[list[str]]:
    yield [value]
    yield [json.dumps(value)[1:-1]]
    yield [xml_escape(value, {'"': "&quot;"})]
    lines = [line.strip() for line in value.splitlines() if line.strip()]
    yield lines
    yield [json.dumps(line)[1:-1] for line in lines]
    yield value.split()
