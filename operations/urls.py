from django.urls import path

from .apis import RehearsalAbortApi, RehearsalDetailApi, RehearsalFinishApi, RehearsalOpenApi, RehearsalStartApi

urlpatterns = [
    path("sales/<int:sale_id>/rehearsals/", RehearsalStartApi.as_view(), name="api-rehearsal-start"),
    path("rehearsals/<int:rehearsal_id>/", RehearsalDetailApi.as_view(), name="api-rehearsal"),
    path("rehearsals/<int:rehearsal_id>/open/", RehearsalOpenApi.as_view(), name="api-rehearsal-open"),
    path("rehearsals/<int:rehearsal_id>/finish/", RehearsalFinishApi.as_view(), name="api-rehearsal-finish"),
    path("rehearsals/<int:rehearsal_id>/abort/", RehearsalAbortApi.as_view(), name="api-rehearsal-abort"),
]
