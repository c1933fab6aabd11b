from django.urls import path

from catalog import api, views

app_name = "catalog"
urlpatterns = [
    path("", views.search_page, name="search"),
    path("p/<path:sku>/", views.product_page, name="product"),
    path("api/search", api.search_text, name="api-search"),
    path("api/search/image", api.search_image, name="api-search-image"),
    path("api/openapi.json", views.openapi_schema, name="openapi"),
]
