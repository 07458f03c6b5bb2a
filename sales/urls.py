from django.urls import URLPattern, URLResolver, include, path

from antibot.apis import ChallengeApi

from . import views
from .apis import PurchaseApi, SaleDetailApi, SaleListApi

api_urlpatterns: list[URLPattern | URLResolver] = [
    path("auth/", include("accounts.urls")),
    path("sales/", SaleListApi.as_view(), name="api-sales"),
    path("sales/<int:sale_id>/", SaleDetailApi.as_view(), name="api-sale"),
    path("sales/<int:sale_id>/challenge/", ChallengeApi.as_view(), name="api-challenge"),
    path("sales/<int:sale_id>/purchase/", PurchaseApi.as_view(), name="api-purchase"),
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
