from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path
from django.views.static import serve

from catalog.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("models/", include("embeddings.urls")),
    path("", include("catalog.urls")),
]
if settings.SERVE_MEDIA:
    urlpatterns += [
        re_path(r"^media/(?P<path>.*)$", serve, {"document_root": settings.MEDIA_ROOT}),
    ]

# A database error outside a view (a middleware, a session save) is a 503 too, never a 500.
handler500 = "searchsite.middleware.server_error"
handler404 = "searchsite.middleware.not_found"
