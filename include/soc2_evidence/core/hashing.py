"""SHA-256 in one streaming pass: the manifest digest and the S3 checksum come from the same read."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

CHUNK_SIZE = 1024 * 1024


@dataclass(frozen=True)
class Digest:
    """SHA-256 of some bytes, with the forms the manifest and S3 each want."""

    sha256: str
    size: int

    @property
    def checksum_sha256(self) -> str:
        """Base64 of the raw digest, the form of S3's ``ChecksumSHA256`` header."""
        return base64.b64encode(bytes.fromhex(self.sha256)).decode("ascii")


def digest_bytes(data: bytes) -> Digest:
    return Digest(hashlib.sha256(data).hexdigest(), len(data))


def digest_stream(stream: BinaryIO) -> Digest:
    """Hash a binary stream without holding it in memory."""
    hasher = hashlib.sha256()
    buffer = bytearray(CHUNK_SIZE)
    view = memoryview(buffer)
    size = 0
    while True:
        read = stream.readinto(buffer)
        if not read:
            break
        hasher.update(view[:read])
        size += read
    return Digest(hasher.hexdigest(), size)


def digest_file(path: str | Path) -> Digest:
    with open(path, "rb", buffering=0) as stream:
        return digest_stream(stream)
