"""What other systems send, decoded into declared types with bounds: the one way parsers read a payload.

A payload is untrusted: an export someone wrote by hand, a backup tool's report, an API body.
Python's own parsing lets through what later crashes far from the file: NaN and Infinity (the
json module accepts them), a 400-digit integer, ``0001-01-01T00:00:00+01:00`` (valid, but out of
range once moved to UTC), a duration of ``1e20`` seconds, or a body nested 10,000 deep (a
``RecursionError``). Here each of those is a :class:`PayloadError` that names where it was (the
caller's ``where``: source and file or page) and the field (msgspec's path, ``results[2].time``).

The numeric types bound what a field can hold, so arithmetic on a decoded value cannot overflow:
times between :data:`EARLIEST` and :data:`LATEST`, durations up to :data:`MAX_SECONDS`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import msgspec

from soc2_evidence.core.errors import PayloadError

T = TypeVar("T")

# Evidence times: nothing an auditor reads predates 1970 or lies past 2999; a margin of centuries
# either side keeps arithmetic on them (an age, an end time) in datetime's range.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2999, 12, 31, 23, 59, 59, tzinfo=UTC)
MAX_SECONDS = 10 * 366 * 86_400  # ten years: longer than any restore, backup age or wait
MAX_COUNT = 2**53  # a total or an id: what a JSON number holds exactly in every language

Seconds = Annotated[float, msgspec.Meta(ge=0, le=MAX_SECONDS)]
Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_COUNT)]
Integer = Annotated[int, msgspec.Meta(ge=-MAX_COUNT, le=MAX_COUNT)]
EpochSeconds = Annotated[float, msgspec.Meta(ge=EARLIEST.timestamp(), le=LATEST.timestamp())]
NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]

_decoder = msgspec.json.Decoder()
_PATH = re.compile(r"^(.*) - at `\$(.*)`$", re.DOTALL)


def decode_json(data: bytes | str, kind: type[T] | Any = Any, *, where: str) -> T:
    """JSON ``data`` as ``kind``; NaN, Infinity, out-of-range numbers and deep nesting are PayloadErrors."""
    try:
        return _decoder.decode(data) if kind is Any else msgspec.json.decode(data, type=kind)
    except msgspec.ValidationError as error:
        raise PayloadError(f"{where}: {field_problem(error)}") from error
    except (msgspec.DecodeError, UnicodeDecodeError) as error:  # msgspec checks a string's UTF-8 as it reads it
        raise PayloadError(f"{where}: not JSON: {_lower(str(error))}") from error
    except RecursionError as error:
        raise PayloadError(f"{where}: JSON nested too deeply to read (over about 1,000 levels)") from error


def convert(value: Any, kind: type[T], *, where: str, strict: bool = True) -> T:
    """An already parsed value (a JSON item, XML attributes as strings with ``strict=False``) as ``kind``."""
    try:
        return msgspec.convert(value, kind, strict=strict)
    except msgspec.ValidationError as error:
        raise PayloadError(f"{where}: {field_problem(error)}") from error
    except RecursionError as error:
        raise PayloadError(f"{where}: nested too deeply to read (over about 1,000 levels)") from error


def field_problem(error: msgspec.ValidationError) -> str:
    """msgspec's ``Expected `int`, got `str` - at `$.time``` as ``time: expected int, got str``."""
    match = _PATH.match(str(error))
    message, path = (match.group(1), match.group(2).lstrip(".")) if match else (str(error), "")
    message = re.sub(r"^Object missing required field `([^`]*)`", r"missing required field '\1'", message)
    message = _lower(message.replace("`", ""))
    return f"{path}: {message}" if path else message


def utc(moment: datetime, *, where: str) -> datetime:
    """An aware UTC time (a naive one is taken as UTC) between EARLIEST and LATEST, else a PayloadError."""
    problem = PayloadError(f"{where}: {moment.isoformat()} is outside {EARLIEST.year}-{LATEST.year}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if not EARLIEST.year <= moment.year <= LATEST.year:  # before astimezone, which overflows at year 1 and 9999
        raise problem
    moment = moment.astimezone(UTC)
    if not EARLIEST <= moment <= LATEST:
        raise problem
    return moment


def _lower(text: str) -> str:
    """A message continued after a colon: ``Expected`` becomes ``expected``, ``JSON`` stays."""
    return text[:1].lower() + text[1:] if text[1:2].islower() else text
