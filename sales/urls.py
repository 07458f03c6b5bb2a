"""The sales API's reads (``/api/sales/``). Purchase and challenge are routed first and flat
in ``flashsale_project.urls``: a stampede is all of them."""

from django.urls import URLPattern, path

from .apis import SaleDetailApi, SaleListApi

urlpatterns: list[URLPattern] = [
    path("", SaleListApi.as_view(), name="api-sales"),
    path("<int:sale_id>/", SaleDetailApi.as_view(), name="api-sale"),
]
