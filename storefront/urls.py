from django.urls import URLPattern, URLResolver, include, path

from . import views

urlpatterns: list[URLPattern | URLResolver] = [
    path("", views.home, name="storefront-home"),
    path("sales/<int:sale_id>/", views.sale_page, name="storefront-sale"),
    path("orders/", views.orders_page, name="storefront-orders"),
    path("orders/<uuid:order_id>/", views.order_page, name="storefront-order"),
    path("orders/<uuid:order_id>/pay/", views.order_pay, name="storefront-order-pay"),
    path("orders/<uuid:order_id>/receipt/", views.order_receipt, name="storefront-order-receipt"),
    path("log/verify.py", views.log_verifier, name="storefront-log-verifier"),
    path("accounts/", include("accounts.web_urls")),
]
