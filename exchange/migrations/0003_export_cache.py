"""The export cache's table (exchange.models.ExportRow). Its functions and triggers are not written
here: they are made from the exporter's running code by exchange.export_cache.install, which every
`migrate` runs after the migrations (post_migrate, exchange/apps.py) and which fills the table."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('exchange', '0002_alter_exportlog_options'),
    ]

    operations = [
        migrations.CreateModel(
            name='ExportRow',
            fields=[
                ('pk', models.CompositePrimaryKey('file', 'patient_id', blank=True, editable=False, primary_key=True, serialize=False)),
                ('file', models.CharField(max_length=40)),
                ('patient_id', models.BigIntegerField()),
                ('study_id', models.CharField(max_length=32)),
                ('rows', models.IntegerField()),
                ('body', models.TextField()),
            ],
            options={
                'verbose_name': 'export cache row',
                'indexes': [models.Index(fields=['file', 'study_id'], name='exportrow_file_order')],
            },
        ),
    ]
