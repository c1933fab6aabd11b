"""{% health_panel %}: the /healthz figures on the admin index."""

from __future__ import annotations

from django import template

from catalog.health import health_report

register = template.Library()


@register.inclusion_tag("admin/catalog/health_panel.html")
def health_panel() -> dict:
    return {"health": health_report()}
