from django.urls import path

from . import demo_shop

urlpatterns = [
    path("checkout/", demo_shop.checkout, name="demo-shop-checkout"),
    path("webhooks/", demo_shop.webhooks, name="demo-shop-webhooks"),
]
