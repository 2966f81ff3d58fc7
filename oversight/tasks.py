"""Background work of study monitoring for the task runner (django.tasks, `manage.py db_worker`)."""

from django.tasks import task

from accounts.models import Site
from oversight import quality


@task()
def run_quality_rules(open_queries: bool = True) -> int:
    """The nightly data-quality run: every rule over every site; opens a query per new hit. The number of hits."""
    hits = quality.run_rules(Site.objects.all())
    if open_queries:
        quality.open_queries(hits)
    return len(hits)
