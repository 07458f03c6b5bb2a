from django.urls import path

from .apis import OrderDetailApi, OrderListApi, PaymentCallbackApi

urlpatterns = [
    path("", OrderListApi.as_view(), name="api-orders"),
    path("<str:order_id>/", OrderDetailApi.as_view(), name="api-order"),
    path("<str:order_id>/payment/", PaymentCallbackApi.as_view(), name="api-order-payment"),
]
