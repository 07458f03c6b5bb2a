from django.urls import URLPattern, path

from .consumers import SaleLiveConsumer

websocket_urlpatterns: list[URLPattern] = [
    path("ws/sales/<int:sale_id>/", SaleLiveConsumer.as_asgi()),
]
