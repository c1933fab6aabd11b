from django.urls import path, register_converter

from catalog import api, views
from catalog.converters import SkuConverter

register_converter(SkuConverter, "sku")

app_name = "catalog"
urlpatterns = [
    path("", views.search_page, name="search"),
    path("p/<sku:sku>/", views.product_page, name="product"),
    path("q/<slug:key>.jpg", views.query_photo, name="query-photo"),
    path("api/search", api.search_text, name="api-search"),
    path("api/search/image", api.search_image, name="api-search-image"),
    path("api/categories", api.categories, name="api-categories"),
    path("api/suggest", api.suggestions, name="api-suggest"),
    path("api/click", api.click, name="api-click"),
    path("api/imports", api.imports, name="api-imports"),
    # <path:...>: any id answers JSON (404 for one that is not a job); one the converter refuses
    # (a line break) reaches handler404, which answers JSON under /api/ too
    path("api/imports/<path:job_id>", api.import_status, name="api-import"),
    path("api/openapi.json", views.openapi_schema, name="openapi"),
]
