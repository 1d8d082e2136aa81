"""A prefix inside an S3 or GCS bucket: what evidence stores and backup locations both address.

The client is made on first use: building one resolves credentials and endpoints, and a store or a
location may be opened and never called (a dry check, a source that fails before it reads).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar


class BucketPrefix:
    """``<scheme>://<bucket>/<prefix>``; names below it are keys relative to the prefix."""

    scheme: ClassVar[str]

    def __init__(self, bucket: str, prefix: str, client_factory: Callable[[], Any]) -> None:
        self.bucket_name = bucket
        self.prefix = prefix.strip("/")
        self.url = f"{self.scheme}://{bucket}/{self.prefix}" if self.prefix else f"{self.scheme}://{bucket}"
        self._client_factory = client_factory
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name
