from django.apps import AppConfig


class TcpDoorConfig(AppConfig):
    name = "tcpdoor"
    verbose_name = "TCP front door"
