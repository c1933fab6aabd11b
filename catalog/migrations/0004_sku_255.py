from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("catalog", "0003_queryimage")]

    operations = [
        migrations.AlterField(model_name="product", name="sku", field=models.CharField(max_length=255, unique=True)),
        migrations.AddField(model_name="importjob", name="duplicates", field=models.PositiveIntegerField(default=0)),
        migrations.AddField(model_name="importjob", name="notes", field=models.JSONField(blank=True, default=list)),
    ]
