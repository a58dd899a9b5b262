"""Uploaded images: size-capped reading, in-memory multipart parsing, the training data's decoder.

An upload is either ``multipart/form-data`` with the image in the field ``file`` (what a browser form
sends) or the raw image as the request body (``curl --data-binary @x.jpg``). The body is read into
memory and refused as soon as it passes ``max_bytes``; multipart parts are kept in memory too
(python-multipart's ``FormParser`` spools files to a temporary file past 1 MB by default; here that
threshold is above the size limit), so no upload touches the disk. Images are decoded by
``medattn.data.io.read_image``, the reader of the training data: the same pixel limit against
decompression bombs, EXIF orientation, CMYK / 16-bit / palette / alpha conversion and resize.
Every problem is an ``UploadError`` with an HTTP status, a code and a message that says what to do.
"""
from __future__ import annotations

import io
from typing import AsyncIterator

import numpy as np

FIELD = "file"


class UploadError(Exception):
    """A bad request: ``status`` (4xx), ``code`` (machine-readable) and ``message`` (for people)."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def json(self) -> dict:
        return {"error": self.code, "detail": self.message}


def too_large(limit: int) -> UploadError:
    return UploadError(413, "upload_too_large", f"the upload is larger than the limit of {limit / 1e6:g} MB "
                                                f"(the server's --max-upload-mb)")


async def read_capped(stream: AsyncIterator[bytes], max_bytes: int, declared: str | None = None) -> bytes:
    """All chunks of ``stream`` joined; ``UploadError`` 413 as soon as they pass ``max_bytes`` (or at once
    when the declared Content-Length does)."""
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise too_large(max_bytes)
    buf = bytearray()
    async for chunk in stream:
        buf += chunk
        if len(buf) > max_bytes:
            raise too_large(max_bytes)
    return bytes(buf)


def multipart_file(body: bytes, content_type: str, field: str = FIELD) -> tuple[bytes, str | None]:
    """(file bytes, file name) of form field ``field`` of a multipart body, parsed in memory."""
    from python_multipart.multipart import FormParser, parse_options_header

    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise UploadError(400, "bad_multipart", "multipart/form-data without a boundary in its Content-Type")
    files, fields = [], []
    config = {"MAX_MEMORY_FILE_SIZE": len(body) + 1, "MAX_BODY_SIZE": len(body) + 1}
    parser = FormParser("multipart/form-data", fields.append, files.append, boundary=boundary, config=config)
    try:
        parser.write(body)
        parser.finalize()
    except Exception as err:  # noqa: BLE001 - python-multipart raises several kinds of parse errors
        raise UploadError(400, "bad_multipart", f"the multipart body cannot be parsed ({type(err).__name__}: {err})") from None
    for f in files:
        if (f.field_name or b"").decode("utf-8", "replace") == field:
            if not f.in_memory:  # the config above keeps it in memory; never serve from a spooled file
                raise RuntimeError("an upload was spooled to disk")
            f.file_object.seek(0)
            name = f.file_name.decode("utf-8", "replace") if f.file_name else None
            return f.file_object.read(), name
    got = [(x.field_name or b"").decode("utf-8", "replace") for x in [*files, *fields]]
    raise UploadError(422, "missing_field", f"no form field {field!r} with a file; the form has "
                                            f"{', '.join(map(repr, got)) or 'no field'}: send the image as "
                                            f"multipart/form-data field {field!r}")


def image_bytes(body: bytes, content_type: str | None) -> tuple[bytes, str | None]:
    """The image bytes (and file name, if any) of a request body of either kind (module docstring)."""
    ctype = (content_type or "").lower()
    if ctype.startswith("multipart/form-data"):
        data, name = multipart_file(body, content_type or "")
    elif ctype.startswith("application/x-www-form-urlencoded"):
        raise UploadError(415, "wrong_encoding", "a url-encoded form carries no file: send the image as "
                                                 f"multipart/form-data field {FIELD!r} or as the raw body")
    else:
        data, name = body, None
    if not data:
        raise UploadError(400, "empty_upload", "the upload is empty: send an image file as multipart/form-data "
                                               f"field {FIELD!r} or as the request body")
    return data, name


def decode_upload(data: bytes, size: int, max_pixels: int | None) -> np.ndarray:
    """Image bytes -> uint8 ``size`` x ``size`` x 3 RGB with the training data's reader."""
    from ..data.io import ImageReadError, read_image

    try:
        image, _ = read_image(io.BytesIO(data), size, max_pixels)
    except ImageReadError as err:
        detail = f" ({err.detail})" if err.detail else ""
        if "pixel limit" in err.kind:
            raise UploadError(413, "image_too_large", f"{err.kind}{detail}") from None
        if "truncated" in err.kind:
            raise UploadError(422, "unreadable_image", f"the image cannot be decoded: {err.kind}{detail}") from None
        raise UploadError(415, "not_an_image", "the upload is not an image file that can be read (PNG, JPEG, TIFF, "
                                               "BMP, ...)") from None
    return image
