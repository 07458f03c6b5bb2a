from django.apps import AppConfig


class AntibotConfig(AppConfig):
    name = "antibot"
    verbose_name = "Anti-bot"
