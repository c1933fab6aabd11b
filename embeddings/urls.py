from django.urls import path

from embeddings import views

app_name = "embeddings"
urlpatterns = [
    path("", views.registry, name="registry"),
    path("<int:pk>/curve.png", views.curve, name="curve"),
    path("evaluation/", views.evaluation, name="evaluation"),
    path("map/", views.map_page, name="map"),
    path("map.json", views.map_json, name="map-json"),
]
