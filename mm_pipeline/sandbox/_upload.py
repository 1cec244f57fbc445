"""Stream a ``multipart/form-data`` batch submission to disk, never holding the file in memory.

The ``file`` part is written to a target path as it arrives and the parse stops as soon as it
grows past the cap; the rest of the body is then read and discarded (up to ``drain_bytes``) so
that the client, still sending, gets to read the 413 instead of a reset connection. Text fields
are kept only up to their length limit (plus one character, to tell that they were too long).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

__all__ = ["FileTooLargeError", "MalformedUploadError", "UploadForm", "read_upload"]


class FileTooLargeError(Exception):
    """The uploaded file is larger than the cap."""


class MalformedUploadError(Exception):
    """The body is not a well-formed ``multipart/form-data`` message."""


@dataclass
class UploadForm:
    """What a submission carried: the file (on disk) and the text fields we know."""

    file_size: int | None = None
    """Bytes in the file part; None when there was no file part."""
    head: bytes = b""
    """The file's first two bytes (its magic number, if any)."""
    fields: dict[str, str] = field(default_factory=dict)
    too_long: list[str] = field(default_factory=list)


class _Collector:
    def __init__(self, target: Path, cap: int, limits: Mapping[str, int]) -> None:
        self.form = UploadForm()
        self.target = target
        self.cap = cap
        self.limits = limits
        self.overflow = False
        self.ended = False
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._name: str | None = None
        self._is_file = False
        self._sink: IO[bytes] | None = None
        self._text = bytearray()

    def close(self) -> None:
        if self._sink is not None:
            self._sink.close()
            self._sink = None

    def on_part_begin(self) -> None:
        self._disposition = b""
        self._name = None
        self._is_file = False
        self._text = bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.strip().lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = b""
        self._header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        raw_name = options.get(b"name")
        if raw_name is None:
            msg = "a multipart part has no Content-Disposition name"
            raise MalformedUploadError(msg)
        self._name = raw_name.decode("utf-8", "replace")
        if self._name == "file" and self.form.file_size is None:
            self._is_file = True
            self.form.file_size = 0
            self._sink = self.target.open("wb")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._is_file and self._sink is not None:
            self.form.file_size = (self.form.file_size or 0) + (end - start)
            if self.form.file_size > self.cap:
                self.overflow = True
                return
            self._sink.write(data[start:end])
            if len(self.form.head) < 2:
                self.form.head += data[start : start + 2 - len(self.form.head)]
        elif self._name is not None and self._name in self.limits:
            # keep at most 4 bytes per allowed character, plus one more character
            room = 4 * (self.limits[self._name] + 1) - len(self._text)
            if room > 0:
                self._text += data[start : min(end, start + room)]

    def on_part_end(self) -> None:
        if self._is_file:
            self.close()
            self._is_file = False
        elif self._name is not None and self._name in self.limits:
            value = self._text.decode("utf-8", "replace")
            if len(value) > self.limits[self._name]:
                self.form.too_long.append(self._name)
            self.form.fields.setdefault(self._name, value)

    def on_end(self) -> None:
        self.ended = True


async def read_upload(
    stream: AsyncIterator[bytes],
    content_type: str,
    *,
    target: Path,
    max_file_bytes: int,
    field_limits: Mapping[str, int],
    drain_bytes: int,
) -> UploadForm:
    """Parse a multipart body from *stream*, writing the ``file`` part to *target*.

    Raises
    ------
    MalformedUploadError
        The content type is not multipart with a boundary, or the body does not parse.
    FileTooLargeError
        The file part exceeded *max_file_bytes* (the body was drained, up to *drain_bytes*).
    """
    kind, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        msg = "the request must be multipart/form-data with a file field"
        raise MalformedUploadError(msg)
    collector = _Collector(target, max_file_bytes, field_limits)
    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": collector.on_part_begin,
            "on_part_data": collector.on_part_data,
            "on_part_end": collector.on_part_end,
            "on_header_field": collector.on_header_field,
            "on_header_value": collector.on_header_value,
            "on_header_end": collector.on_header_end,
            "on_headers_finished": collector.on_headers_finished,
            "on_end": collector.on_end,
        },
    )
    try:
        async for chunk in stream:
            parser.write(chunk)
            if collector.overflow:
                break
        if collector.overflow:
            await drain(stream, drain_bytes)
            raise FileTooLargeError
        parser.finalize()
        if not collector.ended:
            msg = "the multipart body ended before its closing boundary"
            raise MalformedUploadError(msg)
    except MultipartParseError as exc:
        msg = f"the multipart body does not parse: {exc}"
        raise MalformedUploadError(msg) from exc
    finally:
        collector.close()
    return collector.form


async def drain(stream: AsyncIterator[bytes], limit: int) -> None:
    """Read and discard up to *limit* bytes of *stream*."""
    seen = 0
    async for chunk in stream:
        seen += len(chunk)
        if seen > limit:
            return
