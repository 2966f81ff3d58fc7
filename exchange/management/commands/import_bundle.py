from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import translation
from django.utils.translation import gettext, ngettext

from accounts.models import User
from exchange.importer import BundleError, Limits, import_bundle


class Command(BaseCommand):
    help = "Import a CSV bundle (folder or zip) all or nothing; any problem writes nothing."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path, help="bundle folder or zip")
        parser.add_argument(
            "--update",
            action="store_true",
            help="update patients whose study IDs are already in the registry, from a corrected identified "
            "export (rows matched by record_id; needs --reason and --user)",
        )
        parser.add_argument(
            "--max-rows",
            type=int,
            default=None,
            help="refuse a bundle file with more data rows than this (default: setting IMPORT_MAX_ROWS, 1,000,000)",
        )
        parser.add_argument("--reason", default="", help="reason for change, kept in the audit trail (with --update)")
        parser.add_argument(
            "--user", default="", help="USERNAME of the registry user making the change (the trail names her)"
        )
        parser.add_argument(
            "--remove-missing",
            action="store_true",
            help="with --update: delete the rows of the bundle's patients that the bundle leaves out "
            "(never a consent); without it they are kept",
        )
        parser.add_argument(
            "--language",
            choices=[code for code, _name in settings.LANGUAGES],
            default=settings.LANGUAGE_CODE,
            help="the language of the problem report (default: %(default)s)",
        )

    def handle(
        self,
        *args: Any,
        path: Path,
        update: bool,
        reason: str,
        user: str,
        remove_missing: bool,
        max_rows: int | None,
        language: str = settings.LANGUAGE_CODE,
        **options: Any,
    ) -> None:
        with translation.override(language):
            self._import(path, update, reason, user, remove_missing, max_rows)

    def _import(
        self, path: Path, update: bool, reason: str, user: str, remove_missing: bool, max_rows: int | None
    ) -> None:
        if not path.exists():
            raise CommandError(gettext("%(path)s: no such file or folder") % {"path": path})
        if remove_missing and not update:
            raise CommandError(gettext("--remove-missing only goes with --update"))
        if update and not reason.strip():
            raise CommandError(
                gettext("--update needs --reason: every change of existing data is audited with its reason")
            )
        if update and not user.strip():
            raise CommandError(gettext("--update needs --user USERNAME: every change is recorded with who made it"))
        actor = None
        if user.strip():
            actor = User.objects.filter(username=user.strip(), is_active=True).first()
            if actor is None:
                raise CommandError(
                    gettext("--user %(user)s: no active registry user has this username") % {"user": user}
                )
            if not actor.can_enter_data:
                raise CommandError(
                    gettext("--user %(user)s: this user may not enter or correct clinical data") % {"user": user}
                )
        try:
            result = import_bundle(
                path,
                user=actor,
                update_reason=reason if update else "",
                remove_missing=remove_missing,
                limits=Limits.from_settings(max_rows=max_rows),
            )
        except BundleError as exc:
            self.stderr.write(
                ngettext(
                    "The bundle was refused; nothing was imported. %(n)s problem:",
                    "The bundle was refused; nothing was imported. %(n)s problems:",
                    exc.total,
                )
                % {"n": exc.total}
            )
            for problem in exc.problems:
                self.stderr.write(f"  {problem}")
            if exc.unlisted:
                more = ngettext(
                    "... and %(n)s more problem, not listed", "... and %(n)s more problems, not listed", exc.unlisted
                )
                self.stderr.write("  " + more % {"n": exc.unlisted})
            raise CommandError(gettext("import refused")) from exc
        # the counts name the bundle's files (patients, followups...): codes, as in the bundle
        counts = ", ".join(f"{n} {name}" for name, n in result.counts.items() if n) or gettext("nothing new")
        changed = ", ".join(f"{n} {name}" for name, n in result.updated.items() if n)
        removed = ", ".join(f"{n} {name}" for name, n in result.removed.items() if n)
        text = gettext("Imported %(bundle)s: %(counts)s.") % {"bundle": path.name, "counts": counts}
        if changed:
            text += " " + gettext("Updated: %(rows)s.") % {"rows": changed}
        if removed:
            text += " " + gettext("Removed: %(rows)s.") % {"rows": removed}
        text += " " + gettext("Audit trail entries written: %(n)s.") % {"n": result.trail_entries}
        self.stdout.write(self.style.SUCCESS(text))
