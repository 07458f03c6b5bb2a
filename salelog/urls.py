"""The log's API under ``/api/``: the keys, then each sale's checkpoint, entries and proofs
(the paths are the contract's, without a trailing slash below ``log/``)."""

from django.urls import URLPattern, path

from .apis import CheckpointApi, ConsistencyProofApi, InclusionProofApi, LogEntriesApi, LogKeysApi

urlpatterns: list[URLPattern] = [
    path("log/keys/", LogKeysApi.as_view(), name="api-log-keys"),
    path("sales/<int:sale_id>/log/checkpoint", CheckpointApi.as_view(), name="api-log-checkpoint"),
    path("sales/<int:sale_id>/log/entries", LogEntriesApi.as_view(), name="api-log-entries"),
    path("sales/<int:sale_id>/log/proof/inclusion", InclusionProofApi.as_view(), name="api-log-inclusion"),
    path("sales/<int:sale_id>/log/proof/consistency", ConsistencyProofApi.as_view(), name="api-log-consistency"),
]
