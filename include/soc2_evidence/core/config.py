"""The one YAML file that configures the pipeline, as types checked when it is loaded.

Evidence is locked for 400 days, so a typo must never silently change what is collected. The file
is described by msgspec Structs (msgspec, not pydantic: it is already what the core parses JSON
with, it needs no Airflow, its Structs are cheap to build at DAG-parse time, and it generates the
JSON Schema editors use). Every section forbids unknown keys. Each source kind declares its own
``Options`` Struct in its collector module; the loader is given them (``kinds``), so this layer
never imports a collector.

Loading reports every problem at once, each with the file, the YAML line, the key path, what was
expected and, for a misspelt key, the nearest valid one. Relative paths resolve against the file,
never the working directory. ``EVIDENCE_CONFIG`` points at another file; ``EVIDENCE_STORE``
overrides ``store.url`` and ``EVIDENCE_STAGING`` ``staging_dir``.
"""

from __future__ import annotations

import os
import re
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import msgspec
import yaml

from soc2_evidence.core.errors import ConfigError
from soc2_evidence.core.evidence import FAMILIES, check_name

PROJECT_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_CONFIG_PATH = PROJECT_ROOT / "include" / "config" / "evidence.yaml"
DEFAULT_RETENTION_DAYS = 400
SCHEMA_ID = "https://github.com/soc2-evidence/soc2-evidence/schemas/evidence.schema.json"

# The DAG each family's evidence is collected by, keyed as in ``schedules``.
DAG_OF_FAMILY = {"config": "config_snapshot", "backup": "backup_test", "tickets": "tickets"}

# A local path relative to the config file; loading fails when it does not exist. URLs (s3://,
# gs://, https://, ssh://, git@host:...) are left to the collector.
LocalPath = Annotated[str, msgspec.Meta(min_length=1, extra_json_schema={"x-soc2-path": True})]
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]
PositiveSeconds = Annotated[float, msgspec.Meta(gt=0)]
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://|^[^/\s]+@[^/\s]+:")
_CRON_FIELD = re.compile(r"^[0-9A-Za-z*/,?#LW-]+$")
_PRESETS = ("@once", "@continuous", "@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly", "@annually")


S = TypeVar("S", bound="Section")


class _KeywordFields(type(msgspec.Struct)):
    """Makes every subclass's fields keyword-only, as YAML keys are: msgspec applies ``kw_only`` per class,
    and a collector's required option would otherwise be refused after its base's optional ones."""

    def __new__(mcls, name: str, bases: tuple, namespace: dict, **options: Any) -> type:
        options.setdefault("kw_only", True)
        return super().__new__(mcls, name, bases, namespace, **options)


def with_fields_of(
    source: type[Section], names: tuple[str, ...], base: type[Section], name: str, **options: Any
) -> type:
    """A subclass of ``base`` that also declares ``names`` exactly as ``source`` does (type, default, docs).

    msgspec Structs cannot inherit from two bases with fields; this shares a group of options between
    two types (a collector's and an export file entry's) without writing them twice.
    """
    fields = [field for field in msgspec.structs.fields(source) if field.name in names]
    defaults: dict[str, Any] = {"problems": source.problems}
    for field in fields:
        if field.default is not msgspec.NODEFAULT:
            defaults[field.name] = field.default
        elif field.default_factory is not msgspec.NODEFAULT:
            defaults[field.name] = msgspec.field(default_factory=field.default_factory)
    return _struct(name, base, {field.name: field.type for field in fields}, defaults, **options)


class Section(msgspec.Struct, metaclass=_KeywordFields, frozen=True, forbid_unknown_fields=True):
    """Base of every typed part of the file: unknown keys are refused, values are not coerced."""

    def problems(self) -> Iterator[Problem]:
        """What the types cannot say (one of two keys, a pattern that must compile): paths relative to self."""
        return iter(())


class Options(Section):
    """Base of each collector's ``Options``: the keys of a source besides name, kind and family."""


class StoreSection(Section):
    url: Annotated[
        str | None,
        msgspec.Meta(description="s3://bucket/prefix, gs://bucket/prefix, or both joined with '+'"),
    ] = None
    aws_conn_id: Annotated[
        str | None, msgspec.Meta(description="Airflow AWS connection; unset: boto3's standard chain")
    ] = None
    immutable: Annotated[
        bool,
        msgspec.Meta(
            description="false, for development only, archives to a store that cannot lock objects (file://, an "
            "emulator); manifests then say so and evidence verify fails. EVIDENCE_STORE_IMMUTABLE overrides it"
        ),
    ] = True
    abort_stale_uploads: Annotated[
        bool,
        msgspec.Meta(
            description="abort multipart uploads left for over a day under the store's prefix (by a killed archive); "
            "false only lists them in the manifest"
        ),
    ] = True


class RedactionSection(Section):
    secret_variable: Annotated[
        str, msgspec.Meta(min_length=1, description="Airflow Variable holding the HMAC key of redaction fingerprints")
    ] = "soc2_evidence_redaction_secret"  # noqa: S105 - the Variable's name, not a secret


class ValidationSection(Section):
    controls_file: LocalPath = "controls.yaml"
    exceptions_file: LocalPath = "exceptions.yaml"
    freshness_hours: PositiveInt = 48
    calendar_days: PositiveInt = 31


Schedule = Annotated[
    str | None,
    msgspec.Meta(description="A 5-field cron expression or an Airflow preset such as @daily; null: run only by hand"),
]


class SchedulesSection(Section):
    config_snapshot: Schedule = "0 2 * * *"
    tickets: Schedule = "30 2 * * *"
    backup_test: Schedule = "0 4 * * *"

    def problems(self) -> Iterator[Problem]:
        for field in msgspec.structs.fields(self):
            schedule = getattr(self, field.name)
            problem = schedule_problem(schedule) if schedule is not None else None
            if problem:
                yield Problem((field.name,), problem)


class ConfigFile(Section):
    """The whole file; ``sources`` entries are checked against their kind's Options separately."""

    store: StoreSection = msgspec.field(default_factory=StoreSection)
    retention_days: PositiveInt = DEFAULT_RETENTION_DAYS
    staging_dir: str | None = None
    redaction: RedactionSection = msgspec.field(default_factory=RedactionSection)
    validation: ValidationSection = msgspec.field(default_factory=ValidationSection)
    schedules: SchedulesSection = msgspec.field(default_factory=SchedulesSection)
    sources: list[Any] = msgspec.field(default_factory=list)  # each checked against its kind's Options


@dataclass(frozen=True)
class KindSpec:
    """What the loader needs to know of a source kind: its family and its options' type."""

    family: str
    options: type[Options]


@dataclass(frozen=True)
class SourceConfig:
    """One configured evidence source, its ``options`` typed by its collector's ``Options``."""

    name: str
    kind: str
    family: str
    options: Options


@dataclass(frozen=True)
class PipelineConfig:
    path: Path
    store_url: str
    aws_conn_id: str | None
    store_immutable: bool
    abort_stale_uploads: bool
    retention_days: int
    staging_dir: Path
    redaction_secret_variable: str
    controls_path: Path
    exceptions_path: Path
    freshness_hours: int
    calendar_days: int
    schedules: dict[str, str | None]
    sources: tuple[SourceConfig, ...]

    def sources_of(self, family: str) -> list[SourceConfig]:
        return [source for source in self.sources if source.family == family]

    def resolve_path(self, value: str) -> Path:
        """Relative paths in the config are relative to the config file, not the working directory."""
        return resolve_against(self.path, value)


@dataclass(frozen=True)
class Problem:
    """One thing wrong in the file: where (key path), and what."""

    path: tuple[str | int, ...]
    message: str


def config_path() -> Path:
    return Path(os.environ.get("EVIDENCE_CONFIG") or DEFAULT_CONFIG_PATH)


def resolve_against(config_file: Path, value: str) -> Path:
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else (config_file.parent / path).resolve()


def load_config(path: str | Path | None, kinds: Mapping[str, KindSpec]) -> PipelineConfig:
    """The file at ``path`` (default: ``EVIDENCE_CONFIG``, else the shipped file), every problem in one error."""
    path, raw, problems = _checked(path, kinds)
    _refuse(path, problems)
    return _build(path, raw, kinds)


def load_typed_file(path: Path, kind: type[S]) -> S:
    """Another YAML file of the pipeline's (controls, exceptions) as the Section ``kind``.

    Checked as the config file is: every problem at once, each ``file:line: key.path: message``.
    """
    text = read_text(path)
    raw = parse_yaml(path, text)
    problems = list(check_value(raw, kind, ()))
    _refuse(path, _located(path, text, problems) if problems else [])
    return msgspec.convert(raw, kind)


def _refuse(path: Path, problems: list[str]) -> None:
    """One problem as its own line; several under a count, one a line."""
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        raise ConfigError(f"{path}: {len(problems)} problems\n" + "\n".join(problems))


def check_config(path: str | Path | None, kinds: Mapping[str, KindSpec]) -> list[str]:
    """Every problem of the file as one line each (``file:line: key: message``); empty when it is valid."""
    try:
        return _checked(path, kinds)[2]
    except ConfigError as error:  # the file cannot be read, or is not YAML: one line says so
        return [str(error)]


def _checked(path: str | Path | None, kinds: Mapping[str, KindSpec]) -> tuple[Path, Any, list[str]]:
    """The file's path, its parsed content and its problems as located lines, in line order."""
    path = Path(path) if path else config_path()
    text = read_text(path)
    raw = parse_yaml(path, text)
    problems = list(_problems(path, raw, kinds))
    return path, raw, _located(path, text, problems) if problems else []


def json_schema(kinds: Mapping[str, KindSpec]) -> dict[str, Any]:
    """The file's JSON Schema, generated from the types: sources are a union tagged by ``kind``."""
    source_types = [
        _struct(
            f"{kind}_source",
            spec.options,
            {"name": Annotated[str, msgspec.Meta(min_length=1)], "family": Literal[spec.family]},
            {"family": spec.family},
            tag_field="kind",
            tag=kind,
        )
        for kind, spec in sorted(kinds.items())
    ]
    sources = list[typing.Union[tuple(source_types)]]  # noqa: UP007 - a union built at run time
    file_type = _struct(
        "evidence_config", ConfigFile, {"sources": sources}, {"sources": msgspec.field(default_factory=list)}
    )
    schema = msgspec.json.schema(file_type)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def _struct(name: str, base: type, annotations: dict[str, Any], defaults: dict[str, Any], **options: Any) -> type:
    """A subclass of ``base`` with these fields (msgspec's defstruct cannot take our keyword-only metaclass)."""
    namespace = {"__module__": __name__, "__annotations__": annotations, **defaults}
    return _KeywordFields(name, (base,), namespace, **options)


# --- reading ------------------------------------------------------------------------------------

# libyaml's parser where PyYAML was built with it (the wheels are): the same safe loading, about ten
# times faster, which matters because every DAG file loads the config at parse time. An invalid file
# is read again by the pure-Python loader, so its message is the same everywhere.
_FAST_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read config file: {error.strerror or error}") from error
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: config file is not UTF-8 text (byte {error.start})") from error


def parse_yaml(path: Path, text: str) -> Any:
    """The YAML document in ``text``, or a ConfigError naming ``path``, the line and column, and the problem.

    An invalid file is read again by the pure-Python loader for its clearer message (it names the
    character or alias at fault), except when brackets nest deeply: its scanner is quadratic in
    that depth (minutes for a 10,000-deep file), so libyaml's own message is given instead.
    """
    try:
        return yaml.load(text, Loader=_FAST_SAFE_LOADER) or {}  # noqa: S506 - a safe loader, C or Python
    except (yaml.YAMLError, ValueError) as error:
        failure: Exception = error
    except RecursionError as error:  # PyYAML builds nested values recursively, either loader
        raise _invalid(path, text, error) from error
    if _flow_depth(text) <= MAX_RETRIED_FLOW_DEPTH:
        try:
            return yaml.safe_load(text) or {}
        except (yaml.YAMLError, ValueError, RecursionError) as error:
            failure = error
    raise _invalid(path, text, failure) from failure


MAX_RETRIED_FLOW_DEPTH = 64


def _invalid(path: Path, text: str, error: Exception) -> ConfigError:
    """The one-line error of a file that does not load: where (line, column) and what."""
    if isinstance(error, RecursionError):
        return ConfigError(f"{path}: invalid YAML: nested too deeply (over about 1,000 levels)")
    if isinstance(error, yaml.YAMLError):
        mark, problem = getattr(error, "problem_mark", None), getattr(error, "problem", None) or str(error)
    else:  # a value the safe constructor cannot build, such as the timestamp 2026-02-30: find which
        mark, problem = _unbuildable_scalar(text) or (None, str(error))
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return ConfigError(f"{path}: invalid YAML{where}: {problem}")


def _unbuildable_scalar(text: str) -> tuple[Any, str] | None:
    """The mark of the first scalar that parses but cannot be built (``2026-02-30``), and why."""
    try:
        root = yaml.compose(text, Loader=_FAST_SAFE_LOADER)
    except (yaml.YAMLError, RecursionError):
        return None
    builder = yaml.SafeLoader("")
    pending = [root] if root is not None else []
    while pending:  # in document order, without recursion
        node = pending.pop()
        if isinstance(node, yaml.ScalarNode):
            try:
                builder.construct_object(node)
            except (ValueError, yaml.YAMLError) as error:
                return node.start_mark, f"{node.value!r}: {error}"
        elif isinstance(node, yaml.SequenceNode):
            pending += reversed(node.value)
        elif isinstance(node, yaml.MappingNode):
            pending += [part for pair in reversed(node.value) for part in reversed(pair)]
    return None


def _flow_depth(text: str) -> int:
    """How deep ``[`` and ``{`` nest, counting those in quotes too: an upper bound is all the caller needs."""
    depth = deepest = 0
    for char in text:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}" and depth:
            depth -= 1
    return deepest


# --- checking -------------------------------------------------------------------------------------


def _problems(path: Path, raw: Any, kinds: Mapping[str, KindSpec]) -> Iterator[Problem]:
    if not isinstance(raw, dict):
        yield Problem((), f"expected a mapping at the top level, got {_type_name(raw)}")
        return
    yield from check_value(raw, ConfigFile, ())
    validation = raw.get("validation", {})
    yield from _local_paths(path, validation, ValidationSection, ("validation",))
    store = raw.get("store", {})
    if isinstance(store, dict) and not (os.environ.get("EVIDENCE_STORE") or store.get("url")):
        yield Problem(
            ("store",), "missing required key 'url' (s3://bucket/prefix or gs://bucket/prefix), or set EVIDENCE_STORE"
        )
    sources = raw.get("sources")
    if not isinstance(sources, list):
        return
    names: dict[str, int] = {}
    for index, entry in enumerate(sources):
        where = ("sources", index)
        yield from _source_problems(path, entry, where, kinds)
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            if entry["name"] in names:
                yield Problem(
                    (*where, "name"), f"source name {entry['name']!r} is also used by sources[{names[entry['name']]}]"
                )
            names.setdefault(entry["name"], index)
    yield from _unscheduled_families(raw, kinds)


def _source_problems(path: Path, entry: Any, where: tuple, kinds: Mapping[str, KindSpec]) -> Iterator[Problem]:
    if not isinstance(entry, dict):
        yield Problem(where, f"expected a mapping with name, kind and family, got {_type_name(entry)}")
        return
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        yield Problem(where, "needs a string 'name'")
    else:
        try:
            check_name("source name", name)
        except ValueError as error:
            yield Problem((*where, "name"), str(error))
    kind = entry.get("kind")
    spec = kinds.get(kind) if isinstance(kind, str) else None
    if spec is None:
        hint = _suggestion(kind, kinds) if isinstance(kind, str) else ""
        yield Problem((*where, "kind"), f"unknown source kind {kind!r}{hint}; known kinds: {', '.join(sorted(kinds))}")
    family = entry.get("family")
    if family is not None and family not in FAMILIES:
        yield Problem((*where, "family"), f"family must be one of {', '.join(FAMILIES)}, got {family!r}")
    elif spec is not None and family is not None and family != spec.family:
        yield Problem(
            (*where, "family"),
            f"kind {kind} collects {spec.family} evidence, not {family}: set family: {spec.family} "
            f"(its DAG is evidence_{DAG_OF_FAMILY[spec.family]})",
        )
    if spec is not None:
        options = {key: value for key, value in entry.items() if key not in ("name", "kind", "family")}
        yield from check_value(options, spec.options, where)
        yield from _local_paths(path, options, spec.options, where)


def _unscheduled_families(raw: dict[str, Any], kinds: Mapping[str, KindSpec]) -> Iterator[Problem]:
    """A DAG whose family has no source would commit a 'passed' night that proves nothing."""
    schedules = raw.get("schedules") if isinstance(raw.get("schedules"), dict) else {}
    families = set()
    for entry in raw.get("sources") or []:
        if isinstance(entry, dict):
            spec = kinds.get(entry.get("kind")) if isinstance(entry.get("kind"), str) else None
            family = entry.get("family")
            families.add(family if isinstance(family, str) and family else spec.family if spec else None)
    for family, dag_key in DAG_OF_FAMILY.items():
        schedule = schedules.get(dag_key, getattr(SchedulesSection(), dag_key))
        if family not in families and schedule is not None:
            yield Problem(
                ("schedules", dag_key),
                f"no source has family {family}, so evidence_{dag_key} would archive an empty night as passed: "
                f"add a {family} source, or set schedules.{dag_key}: null to leave it unscheduled",
            )


def check_value(value: Any, annotation: Any, path: tuple) -> Iterator[Problem]:
    """Every problem of ``value`` against ``annotation`` (a Struct, a container of them, or a plain type).

    msgspec stops at the first error, so Structs are walked here key by key: each unknown key, each
    missing key and each bad value is reported, and only leaves are handed to msgspec.
    """
    base, metadata = _unwrap(annotation)
    if value is None and _allows_none(annotation):
        return
    if isinstance(base, type) and issubclass(base, msgspec.Struct):
        yield from _check_struct(value, base, path)
        return
    origin, args = typing.get_origin(base), typing.get_args(base)
    if origin in (list, dict) and _has_struct(args[-1]) and isinstance(value, origin):
        yield from _check_container(value, origin, args, metadata, path)
        return
    if _is_union(base) and any(_has_struct(arg) for arg in args):
        yield from _check_union(value, args, path)
        return
    choices = _literal_choices(base)
    if choices is not None and value not in choices:
        shown = ", ".join(map(str, choices))
        yield Problem(path, f"expected one of {shown}, got {value!r}{_suggestion(value, dict.fromkeys(choices))}")
        return
    yield from _check_leaf(value, annotation, path)


def _check_leaf(value: Any, annotation: Any, path: tuple) -> Iterator[Problem]:
    try:
        msgspec.convert(value, annotation)
    except msgspec.ValidationError as error:
        problem = _from_msgspec(path, error)
        shown = value if problem.path == path else None
        suffix = f", got {shown!r}" if shown is not None and ", got" not in problem.message else ""
        yield Problem(problem.path, problem.message + suffix)


def _check_container(value: Any, origin: type, args: tuple, metadata: tuple, path: tuple) -> Iterator[Problem]:
    """A list or mapping of Structs: its own constraints (a minimum length), then each member."""
    if metadata:
        yield from _check_leaf(value, Annotated[(list[Any] if origin is list else dict[Any, Any], *metadata)], path)
    members = enumerate(value) if origin is list else value.items()
    for key, item in members:
        if origin is dict:
            yield from check_value(key, args[0], (*path, key))
        yield from check_value(item, args[-1], (*path, key))


def _check_struct(value: Any, struct: type[msgspec.Struct], path: tuple) -> Iterator[Problem]:
    if not isinstance(value, dict):
        yield Problem(path, f"expected a mapping, got {_type_name(value)}")
        return
    fields = {field.encode_name: field for field in msgspec.structs.fields(struct)}
    found = [
        Problem((*path, key), f"unknown key {key!r}{_suggestion(key, fields)}; valid keys: {', '.join(fields)}")
        for key in value
        if key not in fields
    ]
    for name, field in fields.items():
        if name in value:
            found.extend(check_value(value[name], field.type, (*path, name)))
        elif field.required:
            found.append(Problem(path, f"missing required key {name!r}"))
    yield from found
    # Keys unknown here are left out; anything else wrong (an unknown key further down included) means
    # the Struct cannot be built, so its own rules are not asked.
    if all(problem.message.startswith("unknown key") and len(problem.path) == len(path) + 1 for problem in found):
        known = {key: item for key, item in value.items() if key in fields}
        try:
            checked = msgspec.convert(known, struct)
        except msgspec.ValidationError as error:  # a rule the walk above missed: reported, never raised
            yield _from_msgspec(path, error)
            return
        for problem in checked.problems():
            yield Problem((*path, *problem.path), problem.message)


def _check_union(value: Any, args: tuple, path: tuple) -> Iterator[Problem]:
    """A value that may take several shapes: a tagged union by its tag; else fine if one shape fits,
    or the problems of the closest."""
    tagged = _tagged_structs(args)
    if tagged and isinstance(value, dict):
        tag_field, by_tag = tagged
        tag = value.get(tag_field)
        if not isinstance(tag, str) or tag not in by_tag:  # a list or a mapping is no tag (and not hashable)
            yield Problem(
                (*path, tag_field), f"expected one of {', '.join(by_tag)}, got {tag!r}{_suggestion(tag, by_tag)}"
            )
            return
        yield from check_value({key: item for key, item in value.items() if key != tag_field}, by_tag[tag], path)
        return
    candidates = [list(check_value(value, arg, path)) for arg in args if arg is not type(None)]
    if not all(candidates):
        return
    yield from min(candidates, key=len)


def _tagged_structs(args: tuple) -> tuple[str, dict[str, type]] | None:
    structs = [arg for arg in args if isinstance(arg, type) and issubclass(arg, msgspec.Struct)]
    fields = {struct.__struct_config__.tag_field for struct in structs}
    if not structs or len(fields) != 1 or None in fields:
        return None
    return fields.pop(), {struct.__struct_config__.tag: struct for struct in structs}


def _local_paths(config_file: Path, value: Any, struct: type[msgspec.Struct], path: tuple) -> Iterator[Problem]:
    """Relative local paths must exist where the file says: they resolve against the file itself."""
    if not isinstance(value, dict):
        return
    for field in msgspec.structs.fields(struct):
        item = value.get(field.encode_name)
        if not isinstance(item, str) or not _is_local_path(field.type) or _URL.match(item):
            continue
        if "\x00" in item:  # no file system takes it; Path.resolve() raises ValueError
            yield Problem((*path, field.encode_name), f"{item!r} is not a path: it contains a NUL character")
            continue
        if Path(os.path.expanduser(item)).is_absolute():
            continue
        resolved = resolve_against(config_file.resolve(), item)
        if not resolved.exists():
            yield Problem(
                (*path, field.encode_name),
                f"{item!r} does not exist: relative paths resolve against the config file's folder, here {resolved}",
            )


def _from_msgspec(path: tuple, error: msgspec.ValidationError) -> Problem:
    """msgspec's 'Expected `int`, got `str` - at `$[2]`' as a problem at the full key path."""
    text = str(error).replace("Invalid RFC3339 encoded date", "expected a YYYY-MM-DD date")
    if " - at `key` in `$" in text:  # a mapping's key, not its value, has the wrong type
        message, _, where = text.partition(" - at `key` in `$")
        message += " as a key"
    else:
        message, _, where = text.partition(" - at `$")
    suffix: list[str | int] = []
    for part in re.findall(r"\[(\d+)\]|\.([^.\[`]+)|\[\"?([^\]\"]+)\"?\]", where):
        index, key, quoted = part
        suffix.append(int(index) if index else key or quoted)
    message = message.replace("`", "")
    return Problem((*path, *suffix), message[0].lower() + message[1:] if message else "invalid value")


# --- building -------------------------------------------------------------------------------------


def _build(path: Path, raw: dict[str, Any], kinds: Mapping[str, KindSpec]) -> PipelineConfig:
    file = msgspec.convert(raw, ConfigFile)
    staging = os.environ.get("EVIDENCE_STAGING") or file.staging_dir
    if staging:
        staging_dir = resolve_against(path.resolve(), staging)
    else:
        staging_dir = Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow")) / "evidence-staging"
    sources = tuple(
        SourceConfig(
            name=entry["name"],
            kind=entry["kind"],
            family=kinds[entry["kind"]].family,
            options=msgspec.convert(
                {key: value for key, value in entry.items() if key not in ("name", "kind", "family")},
                kinds[entry["kind"]].options,
            ),
        )
        for entry in file.sources
    )
    resolved = path.resolve()
    return PipelineConfig(
        path=resolved,
        store_url=os.environ.get("EVIDENCE_STORE") or file.store.url or "",
        aws_conn_id=file.store.aws_conn_id,
        store_immutable=_flag(os.environ.get("EVIDENCE_STORE_IMMUTABLE"), file.store.immutable),
        abort_stale_uploads=file.store.abort_stale_uploads,
        retention_days=file.retention_days,
        staging_dir=staging_dir,
        redaction_secret_variable=file.redaction.secret_variable,
        controls_path=resolve_against(resolved, file.validation.controls_file),
        exceptions_path=resolve_against(resolved, file.validation.exceptions_file),
        freshness_hours=file.validation.freshness_hours,
        calendar_days=file.validation.calendar_days,
        schedules={
            field.name: getattr(file.schedules, field.name) for field in msgspec.structs.fields(SchedulesSection)
        },
        sources=sources,
    )


def _flag(override: str | None, configured: bool) -> bool:
    """An environment override of a boolean setting: true/false (any case), else the configured value."""
    if override is None or not override.strip():
        return configured
    if override.strip().lower() in ("true", "false"):
        return override.strip().lower() == "true"
    raise ConfigError(f"EVIDENCE_STORE_IMMUTABLE={override!r}: must be true or false")


def schedule_problem(schedule: str) -> str | None:
    """Why ``schedule`` is neither a 5-field cron expression nor an Airflow preset; None when it is one."""
    if schedule.startswith("@"):
        return None if schedule in _PRESETS else f"unknown preset {schedule!r}; presets: {', '.join(_PRESETS)}"
    fields = schedule.split()
    if len(fields) != 5 or not all(_CRON_FIELD.match(field) for field in fields):
        return f"{schedule!r} is not a 5-field cron expression (minute hour day month weekday) or a preset"
    return None


# --- reporting ------------------------------------------------------------------------------------


def _located(path: Path, text: str, problems: list[Problem]) -> list[str]:
    """``file:line: key.path: message`` for each problem, in the order of the lines they are on."""
    lines = _LineFinder(text)
    located = sorted((lines.line(problem.path), index, problem) for index, problem in enumerate(problems))
    return [f"{path}:{line}: {key_path(problem.path)}: {problem.message}" for line, _, problem in located]


def key_path(path: tuple) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "top level"


class _LineFinder:
    """The YAML line of a key path, from the node tree (composed only when there is something to report)."""

    def __init__(self, text: str) -> None:
        try:
            self.root = yaml.compose(text, Loader=_FAST_SAFE_LOADER)
        except yaml.YAMLError:
            self.root = None

    def line(self, path: tuple) -> int:
        node, line = self.root, 1
        if node is not None:
            line = node.start_mark.line + 1
        for part in path:
            child = self._child(node, part)
            if child is None:
                break
            node, line = child
        return line

    @staticmethod
    def _child(node: Any, part: str | int) -> tuple[Any, int] | None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == str(part):
                    return value, key.start_mark.line + 1
        if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            item = node.value[part]
            return item, item.start_mark.line + 1
        return None


# --- type helpers ---------------------------------------------------------------------------------


def _unwrap(annotation: Any) -> tuple[Any, tuple]:
    if typing.get_origin(annotation) is Annotated:
        base, *metadata = typing.get_args(annotation)
        return base, tuple(metadata)
    return annotation, ()


def _literal_choices(annotation: Any) -> tuple | None:
    """The allowed values of a ``Literal`` (or an optional one); None for any other type."""
    if typing.get_origin(annotation) is Literal:
        return typing.get_args(annotation)
    if _is_union(annotation):
        literals = [arg for arg in typing.get_args(annotation) if typing.get_origin(arg) is Literal]
        if literals:
            return tuple(choice for arg in literals for choice in typing.get_args(arg))
    return None


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _allows_none(annotation: Any) -> bool:
    base, _ = _unwrap(annotation)
    return base is None or base is type(None) or (_is_union(base) and type(None) in typing.get_args(base))


def _has_struct(annotation: Any) -> bool:
    base, _ = _unwrap(annotation)
    if isinstance(base, type) and issubclass(base, msgspec.Struct):
        return True
    return any(_has_struct(arg) for arg in typing.get_args(base))


def _is_local_path(annotation: Any) -> bool:
    if annotation is LocalPath:
        return True
    base, metadata = _unwrap(annotation)
    if _is_union(base):
        return any(_is_local_path(arg) for arg in typing.get_args(base))
    return any(
        isinstance(meta, msgspec.Meta) and (meta.extra_json_schema or {}).get("x-soc2-path") for meta in metadata
    )


def _suggestion(key: Any, valid: Mapping[str, Any]) -> str:
    import difflib  # only when there is a problem to report

    close = difflib.get_close_matches(str(key), [str(name) for name in valid], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _type_name(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", type(None): "nothing"}.get(
        type(value), type(value).__name__
    )
