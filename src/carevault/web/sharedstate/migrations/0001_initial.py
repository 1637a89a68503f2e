from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies: list[tuple[str, str]] = []

    operations = [
        migrations.CreateModel(
            name="SharedStateEntry",
            fields=[
                ("key", models.CharField(max_length=250, primary_key=True, serialize=False)),
                ("value", models.TextField()),
                ("expires_at", models.FloatField(blank=True, db_index=True, null=True)),
            ],
            options={"db_table": "sharedstate_entry"},
        ),
    ]
