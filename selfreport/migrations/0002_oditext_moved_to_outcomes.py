# The ODI wording moved down to outcomes (outcomes.OdiText): state only, the table is kept.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("selfreport", "0001_initial"),
        ("outcomes", "0004_oditext_moved_from_selfreport"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[migrations.DeleteModel(name="OdiText")]),
    ]
