from django.core.management.base import BaseCommand
from django_tasks_db.models import DBTaskResult

from selfreport.models import Message


class Command(BaseCommand):
    help = "Show the task queue (waiting, running, failed) and the messages not yet delivered."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("--all", action="store_true", help="Also list finished tasks and delivered messages")

    def handle(self, *args, all: bool = False, **options):  # type: ignore[no-untyped-def]
        tasks = DBTaskResult.objects.order_by("enqueued_at")
        if not all:
            tasks = tasks.exclude(status="SUCCESSFUL")
        self.stdout.write(f"Tasks ({tasks.count()}):")
        for t in tasks[:200]:
            self.stdout.write(
                f"  {t.status:<10} {t.task_path} args={t.args_kwargs.get('args')} "
                f"run_after={t.run_after if t.run_after.year < 9999 else '-'} enqueued={t.enqueued_at:%Y-%m-%d %H:%M:%S}"
            )
        messages = Message.objects.order_by("created_at")
        if not all:
            messages = messages.exclude(status=Message.Status.SENT)
        self.stdout.write(f"Messages ({messages.count()}):")
        for m in messages[:200]:
            self.stdout.write(
                f"  {m.status:<9} {m.kind:<10} to={m.to_address} attempts={m.attempts} "
                f"created={m.created_at:%Y-%m-%d %H:%M} {m.last_error[:80]}"
            )
