from django.apps import AppConfig


class NaiveShopConfig(AppConfig):
    name = "naive_shop"
    verbose_name = "Benchmark baselines"
