from django.apps import AppConfig


class SaleLogConfig(AppConfig):
    name = "salelog"
    verbose_name = "Transparency log"
