from django.urls import path

from .apis import OrderDetailApi, OrderListApi

urlpatterns = [
    path("", OrderListApi.as_view(), name="api-orders"),
    path("<str:order_id>/", OrderDetailApi.as_view(), name="api-order"),
]
