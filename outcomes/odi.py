"""The ODI wording the patient page and the staff's visit form show: the site's licensed text if
installed, else the shipped placeholder; and the disability bands' labels."""

import hashlib
import json
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from outcomes.models import OdiText

SHIPPED = Path(__file__).resolve().parent / "odi_text"
LANGUAGES = ("en", "zh-hans")

# registry.scoring.odi_band's codes are the bands' names in the literature (domain.md; Fairbank);
# pages show neutral words instead of "crippled" and "bed-bound".
BAND_LABELS = {
    "minimal": _("minimal disability"),
    "moderate": _("moderate disability"),
    "severe": _("severe disability"),
    "crippled": _("very severe disability"),
    "bed-bound": _("extreme disability"),
}


def text_language(language: str | None) -> str:
    """The ODI text for a page language: Chinese for any zh-*, else English."""
    return "zh-hans" if (language or "").lower().startswith("zh") else "en"


def validate(content: Any) -> dict[str, Any]:
    """The text as the page needs it: ten sections, each a title and six statements (scores 0-5)."""
    if not isinstance(content, dict):
        raise ValidationError(gettext("The file must hold a JSON object with a 'sections' list."))
    sections = content.get("sections")
    if not isinstance(sections, list) or len(sections) != 10:
        raise ValidationError(gettext("'sections' must list the ten ODI sections."))
    for number, section in enumerate(sections, 1):
        if not isinstance(section, dict) or not str(section.get("title", "")).strip():
            raise ValidationError(gettext("Section %(number)s: give its 'title'.") % {"number": number})
        statements = section.get("statements")
        if (
            not isinstance(statements, list)
            or len(statements) != 6
            or not all(isinstance(s, str) and s.strip() for s in statements)
        ):
            raise ValidationError(
                gettext("Section %(number)s: 'statements' must be six non-empty texts (scores 0 to 5).")
                % {"number": number}
            )
    return content


def install(path: Path, language: str) -> OdiText:
    if language not in LANGUAGES:
        raise ValidationError(
            gettext("Language must be one of %(languages)s, not %(language)r.")
            % {"languages": ", ".join(LANGUAGES), "language": language}
        )
    raw = path.read_bytes()
    try:
        content = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValidationError(
            gettext("%(file)s is not UTF-8 JSON: %(error)s") % {"file": path.name, "error": exc}
        ) from exc
    content = validate(content)
    content["placeholder"] = bool(content.get("placeholder", False))
    text, _created = OdiText.objects.update_or_create(
        language=language, defaults={"content": content, "sha256": hashlib.sha256(raw).hexdigest()}
    )
    return text


def text_for(language: str) -> dict[str, Any]:
    installed = OdiText.objects.filter(language=language).first()
    if installed:
        return installed.content
    lang = language if language in LANGUAGES else "en"
    return json.loads((SHIPPED / f"{lang}.json").read_text(encoding="utf-8"))
