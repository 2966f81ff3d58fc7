# The ODI wording moved down from selfreport (the staff's visit form shows it too).
# State only: the table selfreport created stays, under its name (Meta.db_table).

import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("outcomes", "0003_followup_no_opioids"),
        ("selfreport", "0001_initial"),  # which created the table
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="OdiText",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("language", models.CharField(max_length=10, unique=True)),
                        ("content", models.JSONField()),
                        ("sha256", models.CharField(max_length=64)),
                        ("installed_at", models.DateTimeField(default=django.utils.timezone.now)),
                    ],
                    options={"db_table": "selfreport_oditext"},
                ),
            ],
        ),
    ]
