"""Serving recorded files: byte ranges from local files or storage, or a redirect
to a short-lived presigned URL when the storage is S3-compatible."""
from __future__ import annotations

from django.http import HttpResponse, HttpResponseRedirect, StreamingHttpResponse

from recordings import archive, constants
from recordings.ranges import Unsatisfiable, content_range, parse_range


def _chunks(f, first: int, length: int):
    try:
        f.seek(first)
        remaining = length
        while remaining > 0:
            block = f.read(min(constants.MEDIA_CHUNK_BYTES, remaining))
            if not block:
                break
            remaining -= len(block)
            yield block
    finally:
        f.close()


def ranged_response(request, opener, size: int, content_type: str, filename: str | None = None):
    """200 with the whole file, 206 with one range, or 416 (Content-Range: bytes */size)."""
    try:
        wanted = parse_range(request.headers.get("Range"), size)
    except Unsatisfiable:
        response = HttpResponse(status=416)
        response["Content-Range"] = f"bytes */{size}"
        return response
    first, last = wanted if wanted else (0, size - 1)
    length = max(0, last - first + 1)
    response = StreamingHttpResponse(_chunks(opener(), first, length) if length else iter(()),
                                     status=206 if wanted else 200, content_type=content_type)
    if wanted:
        response["Content-Range"] = content_range(first, last, size)
    response["Content-Length"] = str(length)
    response["Accept-Ranges"] = "bytes"
    response["Cache-Control"] = "private, max-age=3600"
    if filename:
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def serve_local(request, path, content_type: str, filename: str | None = None):
    size = path.stat().st_size
    return ranged_response(request, lambda: open(path, "rb"), size, content_type, filename)


def serve_stored(request, key: str, content_type: str, filename: str | None = None):
    url = archive.presigned_url(key)
    if url is not None:
        response = HttpResponseRedirect(url)
        response["Cache-Control"] = "no-store"  # the URL expires
        return response
    storage = archive.recordings_storage()
    return ranged_response(request, lambda: storage.open(key, "rb"), storage.size(key), content_type, filename)
