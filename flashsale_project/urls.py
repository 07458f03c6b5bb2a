from django.conf import settings
from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path, re_path
from drf_spectacular.views import SpectacularJSONAPIView, SpectacularSwaggerView

from accounts.views import admin_login
from core.errors import api_not_found
from observability.health import livez, readyz
from observability.views import metrics
from operations.views import sale_console, sale_rehearse
from sales.apis import ChallengeApi, PurchaseApi, QueueApi

# Django tries patterns in order and a stampede is all challenges and purchases: they come
# first, as one flat pattern each, instead of five nested resolvers down (~80 us a request
# under cProfile).
hot_path_urlpatterns: list[URLPattern] = [
    path("api/sales/<int:sale_id>/purchase/", PurchaseApi.as_view(), name="api-purchase"),
    path("api/sales/<int:sale_id>/challenge/", ChallengeApi.as_view(), name="api-challenge"),
    path("api/sales/<int:sale_id>/queue/", QueueApi.as_view(), name="api-queue"),
]
"""Also served ahead of Django's middleware for token bearers (``core.hot_path.HotPathRouter``)."""
urlpatterns: list[URLPattern | URLResolver] = [*hot_path_urlpatterns]
if settings.FLASHSALE_BENCH_ENDPOINTS:
    # The benchmark's baselines get the same early place, so the comparison stays fair.
    urlpatterns.append(path("bench/", include("naive_shop.urls")))
urlpatterns += [
    # The admin's login behind the login throttles (accounts.throttles), then the admin.
    path("admin/login/", admin_login, name="admin-login"),
    # The operator's console of a sale, staff only, beside the sale's admin pages.
    path(
        "admin/sales/flashsale/<int:sale_id>/console/",
        admin.site.admin_view(sale_console),
        name="admin-sale-console",
    ),
    path(
        "admin/sales/flashsale/<int:sale_id>/rehearse/",
        admin.site.admin_view(sale_rehearse),
        name="admin-sale-rehearse",
    ),
    path("admin/", admin.site.urls),
    path("livez", livez, name="livez"),
    path("readyz", readyz, name="readyz"),
    path("healthz", readyz, name="healthz"),
    path("api/schema/", SpectacularJSONAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("metrics", metrics, name="metrics"),
    path("api/auth/", include("accounts.urls")),
    path("api/sales/", include("sales.urls")),
    path("api/orders/", include("orders.urls")),
    path("api/admin/", include("operations.urls")),
    path("api/", include("salelog.urls")),
    # Anything else under /api/ (a malformed id, a missing slash) is the contract's JSON 404.
    re_path(r"^api/", api_not_found),
    path("", include("storefront.urls")),
]
if settings.FLASHSALE_DEMO_SHOP:
    # make run's stand-in for the shop's checkout and webhook receiver (local settings only).
    urlpatterns.insert(-1, path("demo-shop/", include("storefront.demo_shop_urls")))

handler400 = "core.errors.bad_request"
handler404 = "core.errors.not_found"
handler500 = "core.errors.server_error"
