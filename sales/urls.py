from django.urls import URLPattern, URLResolver, include, path

from . import views
from .apis import SaleDetailApi, SaleListApi

api_urlpatterns: list[URLPattern | URLResolver] = [
    path("auth/", include("accounts.urls")),
    path("sales/", SaleListApi.as_view(), name="api-sales"),
    path("sales/<int:sale_id>/", SaleDetailApi.as_view(), name="api-sale"),
    path("orders/", include("orders.urls")),
]

urlpatterns = [
    path("api/", include(api_urlpatterns)),
    # The storefront (server-rendered pages).
    path("", views.home, name="storefront-home"),
    path("sales/<int:sale_id>/", views.sale_page, name="storefront-sale"),
    path("orders/", views.orders_page, name="storefront-orders"),
    path("accounts/", include("accounts.web_urls")),
]
