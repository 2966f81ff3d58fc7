"""Uploaded PDFs: one validator for every form that takes one, and the storage that names them.

`validate_pdf(upload)` accepts a signed consent or a blank consent form only if
it is at most UPLOAD_MAX_MB, starts with ``%PDF-``, parses as a PDF with at
least one page (pypdf), is not encrypted, and contains no active content:
JavaScript, automatic actions (/OpenAction, /AA), launch actions, embedded
files, rich media or XFA forms. These are looked for by walking every object
reachable from the trailer, so objects in compressed object streams are
checked too.

`RandomNameStorage` is the default storage. It keeps the folder chosen by the
field's upload_to and replaces the file name with a random one ending in
``.pdf``. The name a user gave a file never reaches the disk, and one stored
file is never served under another's name.
"""

import secrets
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.storage import FileSystemStorage
from django.utils.translation import gettext as _
from pypdf import PdfReader
from pypdf.errors import PyPdfError
from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject, NameObject

ACTIVE_KEYS = {
    "/JavaScript": "JavaScript",
    "/JS": "JavaScript",
    "/OpenAction": "an action run on opening",
    "/AA": "an automatic action",
    "/Launch": "a launch action",
    "/EmbeddedFile": "an embedded file",
    "/EmbeddedFiles": "an embedded file",
    "/RichMedia": "rich media",
    "/XFA": "an XFA form",
}
ACTIVE_ACTIONS = {"/JavaScript": "JavaScript", "/Launch": "a launch action", "/ImportData": "an import action"}


def _active_content(reader: PdfReader) -> str | None:
    """What active content the PDF holds (first found), walking every reachable object once."""
    seen: set[tuple[int, int]] = set()
    stack: list[Any] = [reader.trailer]
    while stack:
        obj = stack.pop()
        if isinstance(obj, IndirectObject):
            key = (obj.idnum, obj.generation)
            if key in seen:
                continue
            seen.add(key)
            obj = obj.get_object()
        if isinstance(obj, DictionaryObject):  # streams are dictionaries too (their data is not decoded)
            for name, value in obj.items():
                if name in ACTIVE_KEYS:
                    return ACTIVE_KEYS[name]
                if name == "/S" and isinstance(value, NameObject) and value in ACTIVE_ACTIONS:
                    return ACTIVE_ACTIONS[value]
                stack.append(value)
        elif isinstance(obj, ArrayObject):
            stack.extend(obj)
    return None


def validate_pdf(upload: Any) -> Any:
    """Raise ValidationError with a message for the user unless `upload` is a plain PDF; rewind it."""
    limit_mb = settings.UPLOAD_MAX_MB
    if upload.size > limit_mb * 1024 * 1024:
        raise ValidationError(
            _("This file is %(size).1f MB; the largest accepted is %(limit)g MB.")
            % {"size": upload.size / 1024 / 1024, "limit": limit_mb},
            code="too_large",
        )
    upload.seek(0)
    if upload.read(5) != b"%PDF-":
        upload.seek(0)
        raise ValidationError(_("This file is not a PDF; upload the scanned, signed form as a PDF."), code="not_pdf")
    upload.seek(0)
    try:
        reader = PdfReader(upload, strict=True)
        if reader.is_encrypted:
            raise ValidationError(_("This PDF is password-protected; upload it without a password."), code="encrypted")
        if len(reader.pages) < 1:
            raise ValidationError(_("This PDF has no pages."), code="empty")
        active = _active_content(reader)
    except ValidationError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, RecursionError, OSError) as e:
        raise ValidationError(
            _("This file starts like a PDF but is not a readable PDF (%(problem)s); scan or export it again.")
            % {"problem": type(e).__name__},
            code="unreadable",
        ) from e
    finally:
        upload.seek(0)
    if active:
        raise ValidationError(
            _("This PDF contains %(what)s, which is not allowed in a consent document; upload a plain scan.")
            % {"what": active},
            code="active_content",
        )
    return upload


class RandomNameStorage(FileSystemStorage):
    """File-system storage that stores every upload under a random name in its upload_to folder."""

    def generate_filename(self, filename: str) -> str:
        folder, _sep, _name = filename.replace("\\", "/").rpartition("/")
        random_name = f"{secrets.token_hex(16)}.pdf"
        return super().generate_filename(f"{folder}/{random_name}" if folder else random_name)


def inert_download(response: Any) -> Any:
    """A stored upload is always a download, never a page: sandboxed, and its type never sniffed."""
    response["Content-Disposition"] = response.get("Content-Disposition", "attachment").replace("inline", "attachment")
    response["Content-Security-Policy"] = "sandbox"
    response["X-Content-Type-Options"] = "nosniff"
    return response
