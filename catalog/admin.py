from __future__ import annotations

import uuid
from pathlib import Path

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.utils.html import format_html

from catalog.images import sha256, store_product_image
from catalog.jobs import job_state
from catalog.models import ImportJob, Product


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["thumb", "sku", "title", "category", "price", "updated_at"]
    list_display_links = ["thumb", "sku"]
    list_filter = ["category", "updated_at"]
    search_fields = ["sku", "title", "description"]
    readonly_fields = ["image_hash", "content_hash", "created_at", "updated_at", "preview"]
    exclude = ["thumbnail"]
    list_per_page = 50

    @admin.display(description="")
    def thumb(self, obj: Product) -> str:
        if not obj.thumbnail:
            return "-"
        return format_html('<img src="{}" width="56" height="56" style="object-fit:contain">', obj.thumbnail.url)

    @admin.display(description="photo")
    def preview(self, obj: Product) -> str:
        return format_html('<img src="{}" width="192">', obj.thumbnail.url) if obj.thumbnail else "-"

    def save_model(self, request: HttpRequest, obj: Product, form: forms.ModelForm, change: bool) -> None:
        from embeddings.dispatch import queue_embedding

        if "image" in form.changed_data and obj.image:
            obj.image.seek(0)
            data = obj.image.read()
            obj.image_hash = sha256(data)
            obj.image.name, obj.thumbnail.name = store_product_image(data, obj.image_hash)
        obj.content_hash = Product.compute_content_hash(
            obj.title, obj.description, obj.category, obj.price, obj.image_hash
        )
        super().save_model(request, obj, form, change)
        # Same path as an import: the row is committed, then its vectors are queued.
        queue_embedding([obj.pk])


class ImportForm(forms.Form):
    file = forms.FileField(
        help_text="A CSV with columns sku,title,description,category,price,image, "
        "or a ZIP holding that CSV and the images it names."
    )

    def clean_file(self):  # type: ignore[no-untyped-def]
        upload = self.cleaned_data["file"]
        if upload.size > settings.MAX_IMPORT_BYTES:
            raise forms.ValidationError(f"File is {upload.size:,} bytes; the limit is {settings.MAX_IMPORT_BYTES:,}.")
        # .tsv/.txt: Excel's "Unicode text" export (tab-separated UTF-16), read like a CSV
        if not upload.name.lower().endswith((".csv", ".tsv", ".txt", ".zip")):
            raise forms.ValidationError("Upload a .csv or a .zip file (or a .tsv/.txt tab-separated export).")
        return upload


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    list_display = ["id", "source_name", "status", "progress", "created", "updated", "unchanged", "failed", "created_at"]
    list_filter = ["status"]
    readonly_fields = [f.name for f in ImportJob._meta.fields] + ["errors_table"]
    exclude = ["errors", "product_ids"]
    change_list_template = "admin/catalog/importjob/change_list.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="progress")
    def progress(self, obj: ImportJob) -> str:
        url = reverse("admin:catalog_importjob_progress", args=[obj.pk])
        return format_html('<a href="{}">{}%</a>', url, obj.percent)

    @admin.display(description="bad rows")
    def errors_table(self, obj: ImportJob) -> str:
        if not obj.errors:
            return "none"
        rows = "".join(
            format_html("<tr><td>{}</td><td>{}</td><td>{}</td></tr>", e["row"], e["sku"], e["error"])
            for e in obj.errors
        )
        return format_html("<table><tr><th>row</th><th>sku</th><th>problem</th></tr>{}</table>", format_html(rows))

    def get_urls(self):  # type: ignore[no-untyped-def]
        extra = [
            path("upload/", self.admin_site.admin_view(self.upload_view), name="catalog_importjob_upload"),
            path("<int:job_id>/progress/", self.admin_site.admin_view(self.progress_view), name="catalog_importjob_progress"),
            path("<int:job_id>/state.json", self.admin_site.admin_view(self.state_view), name="catalog_importjob_state"),
        ]
        return extra + super().get_urls()

    def upload_view(self, request: HttpRequest) -> HttpResponse:
        from catalog.tasks import import_catalogue
        from embeddings.registry import ensure_active_model

        form = ImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            folder = settings.DATA_DIR / "imports" / uuid.uuid4().hex
            folder.mkdir(parents=True)
            target = folder / Path(upload.name).name
            with open(target, "wb") as out:
                for chunk in upload.chunks():
                    out.write(chunk)
            ensure_active_model()
            # csv_path names the upload from the start, so the reconciler can queue a lost job again.
            job = ImportJob.objects.create(source_name=upload.name, csv_path=str(target))
            transaction.on_commit(lambda: import_catalogue.delay(job.pk, str(target)))
            messages.info(request, f"Import #{job.pk} queued.")
            return redirect("admin:catalog_importjob_progress", job.pk)
        context = {**self.admin_site.each_context(request), "form": form, "title": "Import a catalogue", "opts": self.model._meta}
        return render(request, "admin/catalog/importjob/upload.html", context)

    def progress_view(self, request: HttpRequest, job_id: int) -> HttpResponse:
        job = get_object_or_404(ImportJob, pk=job_id)
        context = {**self.admin_site.each_context(request), "job": job, "title": f"Import #{job.pk}", "opts": self.model._meta}
        return render(request, "admin/catalog/importjob/progress.html", context)

    def state_view(self, request: HttpRequest, job_id: int) -> JsonResponse:
        return JsonResponse(job_state(get_object_or_404(ImportJob, pk=job_id)))
