from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Organisations and members"

    def ready(self):
        from accounts import signals

        signals.connect_user_signals()  # announce access changes to open sockets
