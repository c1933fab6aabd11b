from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.core.files.uploadedfile import UploadedFile
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from catalog import analytics
from catalog.images import sha256, store_product_image
from catalog.jobs import job_state
from catalog.models import ApiToken, ImportJob, PopularQuery, Product, ProductPopularity, SearchLog, Synonym, term_key
from catalog.tokens import create_token, revoke
from catalog.uploads import UploadRefused, check_upload, queue_import
from embeddings.dispatch import queue_embedding


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["thumb", "sku", "title", "category", "price", "updated_at"]
    list_display_links = ["thumb", "sku"]
    list_filter = ["category", "updated_at"]
    search_fields = ["sku", "title", "description"]
    readonly_fields = ["image_hash", "content_hash", "created_at", "updated_at", "preview", "further_photos"]
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

    @admin.display(description="further photos")
    def further_photos(self, obj: Product) -> str:
        # Read-only: they change by importing the row again, which keeps the unchanged ones
        # and their vectors (catalog/ingest.py).
        photos = list(obj.photos.all()) if obj.pk else []
        if not photos:
            return "none (the CSV's images column adds them)"
        cells = format_html_join(
            "",
            '<figure style="display:inline-block;margin:0 .5rem .5rem 0"><img src="{}" width="96">'
            '<figcaption>photo {} · <code title="sha256">{}</code></figcaption></figure>',
            ((p.thumbnail.url, p.position, p.sha256[:12]) for p in photos),
        )
        return format_html("<div>{}</div>", cells)

    def save_model(self, request: HttpRequest, obj: Product, form: forms.ModelForm, change: bool) -> None:
        if "image" in form.changed_data and obj.image:
            obj.image.seek(0)
            data = obj.image.read()
            obj.image_hash = sha256(data)
            obj.image.name, obj.thumbnail.name = store_product_image(data, obj.image_hash)
        obj.content_hash = Product.compute_content_hash(
            obj.title, obj.description, obj.category, obj.price, obj.image_hash, obj.photo_hashes()
        )
        super().save_model(request, obj, form, change)
        # Same path as an import: the row is committed, then its vectors are queued.
        queue_embedding([obj.pk])


class ImportForm(forms.Form):
    file = forms.FileField(
        help_text="A CSV with columns sku,title,description,category,price,image, "
        "or a ZIP holding that CSV and the images it names."
    )

    def clean_file(self) -> UploadedFile:
        upload = self.cleaned_data["file"]
        try:
            check_upload(upload)
        except UploadRefused as exc:
            raise forms.ValidationError(str(exc)) from exc
        return upload


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "source_name",
        "status",
        "progress",
        "created",
        "updated",
        "unchanged",
        "failed",
        "created_at",
    ]
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

    def get_urls(self) -> list[URLPattern]:
        extra = [
            path("upload/", self.admin_site.admin_view(self.upload_view), name="catalog_importjob_upload"),
            path(
                "<int:job_id>/progress/",
                self.admin_site.admin_view(self.progress_view),
                name="catalog_importjob_progress",
            ),
            path(
                "<int:job_id>/state.json", self.admin_site.admin_view(self.state_view), name="catalog_importjob_state"
            ),
        ]
        return extra + super().get_urls()

    def upload_view(self, request: HttpRequest) -> HttpResponse:
        form = ImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            job = queue_import(form.cleaned_data["file"])
            messages.info(request, f"Import #{job.pk} queued.")
            return redirect("admin:catalog_importjob_progress", job.pk)
        context = {
            **self.admin_site.each_context(request),
            "form": form,
            "title": "Import a catalogue",
            "opts": self.model._meta,
        }
        return render(request, "admin/catalog/importjob/upload.html", context)

    def progress_view(self, request: HttpRequest, job_id: int) -> HttpResponse:
        job = get_object_or_404(ImportJob, pk=job_id)
        context = {
            **self.admin_site.each_context(request),
            "job": job,
            "title": f"Import #{job.pk}",
            "opts": self.model._meta,
        }
        return render(request, "admin/catalog/importjob/progress.html", context)

    def state_view(self, request: HttpRequest, job_id: int) -> JsonResponse:
        return JsonResponse(job_state(get_object_or_404(ImportJob, pk=job_id)))


class ApiTokenForm(forms.ModelForm):
    class Meta:
        model = ApiToken
        fields = ["user", "name"]

    def clean_user(self) -> User:
        user = self.cleaned_data["user"]
        if not user.is_staff:
            raise forms.ValidationError("Only staff users may use the bulk API: make the user staff first.")
        return user


class TokenStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("active", "active"), ("revoked", "revoked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> QuerySet[ApiToken]:
        if self.value() in ("active", "revoked"):
            return queryset.filter(revoked_at__isnull=self.value() == "active")
        return queryset


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens for the bulk API. The token is shown once, in a message after it is made."""

    list_display = ["name", "prefix_shown", "user", "last_used_at", "state"]
    list_filter = [TokenStateFilter]
    readonly_fields = ["prefix_shown", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke_tokens"]

    def get_form(
        self, request: HttpRequest, obj: ApiToken | None = None, change: bool = False, **kwargs: Any
    ) -> type[forms.ModelForm]:
        if obj is None:
            kwargs["form"] = ApiTokenForm
        return super().get_form(request, obj, change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> tuple[str, ...]:
        return ("user", "name") if obj is None else ("name", "user", *self.readonly_fields)

    def get_readonly_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> list[str]:
        # a token belongs to one user for its whole life: to move it, revoke it and make another
        return [] if obj is None else ["user", *self.readonly_fields]

    @admin.display(description="token")
    def prefix_shown(self, obj: ApiToken) -> str:
        return f"{obj.prefix}…"

    @admin.display(description="state")
    def state(self, obj: ApiToken) -> str:
        return "active" if obj.is_active else f"revoked {obj.revoked_at:%Y-%m-%d %H:%M}"

    def save_model(self, request: HttpRequest, obj: ApiToken, form: forms.ModelForm, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        row, token = create_token(obj.user, obj.name)
        obj.pk, obj.key_hash, obj.prefix, obj.created_at = row.pk, row.key_hash, row.prefix, row.created_at
        messages.warning(
            request,
            format_html(
                'API token for {}: <code id="new-api-token">{}</code> Copy it now: it is not stored and '
                "will not be shown again. Send it as <code>Authorization: Bearer &lt;token&gt;</code>.",
                obj.user.get_username(),
                token,
            ),
        )

    @admin.action(description="Revoke the selected tokens")
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        count = revoke(queryset)
        messages.info(request, f"{count} token(s) revoked.")


REPORT_DAYS = (1, 7, 30, 90)


@admin.register(SearchLog)
class SearchLogAdmin(admin.ModelAdmin):
    """Search analytics: a report per day instead of a list of rows (catalog/analytics.py)."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: SearchLog | None = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        extra = [path("export.csv", self.admin_site.admin_view(self.export_view), name="catalog_searchlog_export")]
        return extra + super().get_urls()

    def _span(self, request: HttpRequest) -> tuple[int, date, date, date | None]:
        raw = request.GET.get("days", "")
        days = int(raw) if raw.isascii() and raw.isdigit() and int(raw) in REPORT_DAYS else 7
        end = timezone.localdate()
        chosen = None
        try:
            chosen = date.fromisoformat(request.GET.get("day", ""))
        except ValueError:
            pass
        return days, end - timedelta(days=days - 1), end, chosen

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        days, start, end, chosen = self._span(request)
        first, last = (chosen, chosen) if chosen else (start, end)
        per_day = analytics.days(start, end)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Search analytics",
            "days": days,
            "day_choices": REPORT_DAYS,
            "per_day": per_day,
            "total": analytics.total(per_day),
            "chosen": chosen,
            "first": first,
            "last": last,
            "enabled": settings.SEARCH_LOG_ENABLED,
            "keep_days": settings.SEARCH_LOG_DAYS,
            "top": analytics.top_queries(first, last, limit=20),
            "zero": analytics.top_queries(first, last, limit=20, zero_only=True),
            "popular": PopularQuery.objects.order_by("-score", "text")[:20],
            "clicked": ProductPopularity.objects.select_related("product").order_by("-score", "product_id")[:20],
            "min_visitors": max(2, settings.SUGGEST_POPULAR_MIN_VISITORS),
            "half_life": settings.POPULARITY_HALF_LIFE_DAYS,
            "refresh_minutes": settings.POPULARITY_REFRESH_MINUTES,
            "boost": settings.SEARCH_POPULARITY_WEIGHT,
            "export_url": reverse("admin:catalog_searchlog_export")
            + f"?days={days}"
            + (f"&day={chosen.isoformat()}" if chosen else ""),
        }
        return render(request, "admin/catalog/searchlog/report.html", context)

    def export_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        days, start, end, chosen = self._span(request)
        first, last = (chosen, chosen) if chosen else (start, end)
        response = HttpResponse(analytics.export_csv(first, last), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="search-analytics-{first}-{last}.csv"'
        return response


class SynonymForm(forms.ModelForm):
    class Meta:
        model = Synonym
        fields = ("term", "word")

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        term, word = (data.get("term") or "").strip().lower(), (data.get("word") or "").strip().lower()
        if term and word:
            key = term_key(term)
            if not key:
                raise forms.ValidationError(f"{term!r} has only words search ignores (like 'the', 'and')")
            if Synonym.objects.filter(term_key=key, word=word).exclude(pk=self.instance.pk).exists():
                raise forms.ValidationError(f"{term!r} already stands for {word!r}")
        return data


@admin.register(Synonym)
class SynonymAdmin(admin.ModelAdmin):
    """Keyword search synonyms (catalog/synonyms.py): an admin's rows apply to every search;
    WordNet's are made from the catalogue's words and apply only to words it never uses."""

    form = SynonymForm
    list_display = ("term", "word", "source")
    list_filter = ("source",)
    search_fields = ("term", "word")
    ordering = ("term", "word")
    readonly_fields = ("source",)
