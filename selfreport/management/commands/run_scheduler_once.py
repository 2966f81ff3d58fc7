import time

from django.core.management.base import BaseCommand

from selfreport import scheduler


class Command(BaseCommand):
    help = "Queue due invitations, reminders, digests, alerts and re-consent notes (for cron); the worker sends them."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("--every", type=int, default=0, help="Repeat every N seconds (0: run once)")

    def handle(self, *args, every: int = 0, **options):  # type: ignore[no-untyped-def]
        while True:
            counts = scheduler.run_once()
            self.stdout.write(" ".join(f"{k}={v}" for k, v in counts.items()))
            if every <= 0:
                return
            time.sleep(every)
