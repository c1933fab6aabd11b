from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from embeddings.models import EmbeddingModel, EvaluationRun, TrainingJob
from embeddings.tasks import activate_model, train_model
from embeddings.train_jobs import DEFAULTS


@admin.register(EmbeddingModel)
class EmbeddingModelAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "kind",
        "status",
        "gate_decision",
        "backbone",
        "text_tower",
        "image_dim",
        "text_dim",
        "vectors",
        "created_at",
    ]
    list_filter = ["kind", "status"]
    readonly_fields = [f.name for f in EmbeddingModel._meta.fields]
    actions = ["activate_selected"]
    change_list_template = "admin/embeddings/embeddingmodel/change_list.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # models come from training or the baseline, not from a form

    @admin.display(description="gate")
    def gate_decision(self, obj: EmbeddingModel) -> str:
        gate = obj.gate or {}
        return str(gate.get("reason") or gate.get("decision") or "–")

    @admin.display(description="vectors")
    def vectors(self, obj: EmbeddingModel) -> int:
        return obj.vector_count()

    @admin.action(description="Activate (re-embed the catalogue, then switch)")
    def activate_selected(self, request: HttpRequest, queryset: QuerySet[EmbeddingModel]) -> TemplateResponse | None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one model to activate.", messages.ERROR)
            return None
        model = queryset.get()
        if model.status == EmbeddingModel.Status.ACTIVE:
            self.message_user(request, f"{model.name} is already active.", messages.WARNING)
            return None
        if model.gate_rejected and request.POST.get("confirm") != "yes":
            # The gate measured it worse (or no better) than the active model: say so first.
            return TemplateResponse(
                request,
                "admin/embeddings/embeddingmodel/confirm_activate.html",
                {
                    **self.admin_site.each_context(request),
                    "model": model,
                    "opts": self.model._meta,
                    "title": f"Activate {model.name} against the gate's advice?",
                },
            )
        transaction.on_commit(lambda: activate_model.delay(model.pk))
        self.message_user(
            request,
            f"Re-embedding the catalogue with {model.name}; search keeps using the current model until it is done.",
        )
        return None


class TrainForm(forms.Form):
    backbone = forms.ChoiceField(
        choices=[
            ("resnet50", "ResNet50"),
            ("efficientnet_lite0", "EfficientNet-Lite0"),
            ("efficientnet_lite2", "EfficientNet-Lite2"),
        ],
        initial=lambda: settings.EMBEDDINGS_IMAGE_BACKBONE,
    )
    text = forms.ChoiceField(choices=[("gru", "GRU over GloVe"), ("minilm", "MiniLM + projection")], initial="gru")
    dim = forms.IntegerField(min_value=16, max_value=2000, initial=lambda: settings.EMBED_DIM, label="joint dimension")
    epochs = forms.IntegerField(min_value=1, max_value=500, initial=DEFAULTS["epochs"])
    mining = forms.ChoiceField(choices=[("semi-hard", "semi-hard"), ("hardest", "hardest")], initial=DEFAULTS["mining"])
    margin = forms.FloatField(min_value=0.01, max_value=2.0, initial=DEFAULTS["margin"])
    activate = forms.BooleanField(required=False, initial=True, help_text="switch search to it when trained")


@admin.register(TrainingJob)
class TrainingJobAdmin(admin.ModelAdmin):
    list_display = ["id", "status", "params_short", "model", "progress_link", "created_at", "finished_at"]
    readonly_fields = [f.name for f in TrainingJob._meta.fields]
    change_list_template = "admin/embeddings/trainingjob/change_list.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="params")
    def params_short(self, obj: TrainingJob) -> str:
        p = obj.params
        return f"{p.get('backbone') or 'default'} + {p.get('text')}, {p.get('epochs')} epochs"

    @admin.display(description="progress")
    def progress_link(self, obj: TrainingJob) -> str:
        return format_html('<a href="{}">live</a>', reverse("admin:embeddings_trainingjob_live", args=[obj.pk]))

    def get_urls(self) -> list[URLPattern]:
        return [
            path("train/", self.admin_site.admin_view(self.train_view), name="embeddings_trainingjob_train"),
            path("<int:job_id>/live/", self.admin_site.admin_view(self.live_view), name="embeddings_trainingjob_live"),
            path(
                "<int:job_id>/state.json",
                self.admin_site.admin_view(self.state_view),
                name="embeddings_trainingjob_state",
            ),
        ] + super().get_urls()

    def train_view(self, request: HttpRequest) -> HttpResponse:
        form = TrainForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = dict(form.cleaned_data)
            activate = data.pop("activate")
            job = TrainingJob.objects.create(params=data, activate=activate)
            transaction.on_commit(lambda: train_model.delay(job.pk))
            messages.info(request, f"Training #{job.pk} queued on the 'embed' workers.")
            return redirect("admin:embeddings_trainingjob_live", job.pk)
        context = {
            **self.admin_site.each_context(request),
            "form": form,
            "title": "Train a joint model",
            "opts": self.model._meta,
        }
        return render(request, "admin/embeddings/trainingjob/train.html", context)

    def live_view(self, request: HttpRequest, job_id: int) -> HttpResponse:
        job = get_object_or_404(TrainingJob, pk=job_id)
        context = {
            **self.admin_site.each_context(request),
            "job": job,
            "title": f"Training #{job.pk}",
            "opts": self.model._meta,
        }
        return render(request, "admin/embeddings/trainingjob/live.html", context)

    def state_view(self, request: HttpRequest, job_id: int) -> JsonResponse:
        job = get_object_or_404(TrainingJob, pk=job_id)
        model = job.model
        return JsonResponse(
            {
                "status": job.status,
                "progress": job.progress,
                "history": job.history,
                "error": job.error,
                "model": model.name if model else None,
                "model_status": model.status if model else None,
                "metrics": model.metrics if model else {},
            }
        )


@admin.register(EvaluationRun)
class EvaluationRunAdmin(admin.ModelAdmin):
    list_display = ["id", "queries_file", "n_text_queries", "n_image_queries", "created_at"]
    readonly_fields = [f.name for f in EvaluationRun._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
