from django.apps import AppConfig


class StreamsConfig(AppConfig):
    name = "streams"
    verbose_name = "Devices and live streams"

    def ready(self):
        from streams import signals  # noqa: F401 -- disconnect a device when it is disabled
