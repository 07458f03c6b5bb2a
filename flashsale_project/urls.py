from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularJSONAPIView

from .health import healthz
from .metrics_view import metrics

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("api/schema/", SpectacularJSONAPIView.as_view(), name="api-schema"),
    path("metrics", metrics, name="metrics"),
    path("", include("sales.urls")),
]

if settings.FLASHSALE_BENCH_ENDPOINTS:
    urlpatterns.append(path("bench/", include("naive_shop.urls")))

handler404 = "flashsale_project.api_errors.not_found"
handler500 = "flashsale_project.api_errors.server_error"
