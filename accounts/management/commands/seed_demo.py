"""manage.py seed_demo -- a demo organisation to try Sightline with. Safe to run again.

Creates (or brings back to the documented state) organisation "Demo" with the
logins owner, operator and viewer, all with the password $DEMO_PASSWORD or,
when that is unset, the documented demo password "sightline-demo"; the owner is
staff so the admin works. Two devices, "Lobby camera" (JPEG) and "Yard camera"
(H.264), each get a fresh token on every run, written to
<var>/demo/<device-slug>.token with mode 0600 for the simulated cameras
(sightline-agent --token-file ...). A device keeps its two newest
tokens, so a camera still running on the previous file stays connected.

It refuses to touch a login named owner/operator/viewer that belongs to any
other organisation, or is a superuser, so it cannot take over a real account.
"""
import os
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils.text import slugify

from accounts.management.credentials import shown_path, write_secret_file
from accounts.models import Membership, Organisation, Role
from streams.models import Device, MediaKind, RecordingPolicy

DEMO_PASSWORD = "sightline-demo"
ORGANISATION = ("Demo", "demo")
LOGINS = [
    ("owner", Role.OWNER, "manages devices and members; can use the admin"),
    ("operator", Role.OPERATOR, "watches, controls cameras, exports clips"),
    ("viewer", Role.VIEWER, "watches and replays"),
]
DEVICES = [
    ("Lobby camera", MediaKind.JPEG, "Ground floor lobby"),
    ("Yard camera", MediaKind.H264, "Delivery yard"),
]


def token_file_name(device_name: str) -> str:
    return f"{slugify(device_name)}.token"


class Command(BaseCommand):
    help = "Create or refresh the demo organisation, its three logins and two devices with fresh tokens."

    def add_arguments(self, parser):
        parser.add_argument(
            "--token-dir", type=Path, help="Where to write the device tokens (default: <SIGHTLINE_VAR_DIR>/demo)"
        )

    def handle(self, *args, token_dir=None, **options):
        token_dir = token_dir or Path(settings.VAR_DIR) / "demo"
        password = os.environ.get("DEMO_PASSWORD") or DEMO_PASSWORD
        with transaction.atomic():
            org, _ = Organisation.objects.get_or_create(slug=ORGANISATION[1], defaults={"name": ORGANISATION[0]})
            for username, role, _ in LOGINS:
                self._seed_login(org, username, role, password)
            issued = [(name, self._seed_device(org, name, media, location)) for name, media, location in DEVICES]
            # Files are written inside the transaction: if it fails, the next run rewrites them.
            for name, token in issued:
                write_secret_file(token_dir / token_file_name(name), token)

        self.stdout.write(f"Demo organisation {org.name!r} is ready (id {org.pk}).")
        self.stdout.write("Logins (username / password):")
        for username, _, what in LOGINS:
            self.stdout.write(f"  {username} / {password}".ljust(34) + what)
        self.stdout.write("Device tokens (fresh on every run, mode 0600):")
        for name, _ in issued:
            self.stdout.write(f"  {name}: {shown_path(token_dir / token_file_name(name))}")

    def _seed_login(self, org, username, role, password):
        User = get_user_model()
        user = User._default_manager.filter(username=username).first()
        if user is not None:
            foreign = Membership.objects.filter(user=user).exclude(organisation=org)
            if user.is_superuser or foreign.exists():
                raise CommandError(
                    f"A login named {username!r} exists outside the demo; seed_demo will not change it."
                )
        else:
            user = User(username=username)
        user.is_active = True
        user.is_staff = role == Role.OWNER
        user.set_password(password)
        user.save()
        Membership.objects.update_or_create(
            organisation=org, user=user, defaults={"role": role, "restricted_to_grants": False}
        )

    def _seed_device(self, org, name, media, location) -> str:
        device, _ = Device.objects.update_or_create(
            organisation=org,
            name=name,
            defaults={
                "expected_media": media,
                "location": location,
                "enabled": True,
                "recording_policy": RecordingPolicy.CONTINUOUS,
                "retention_days": 3,
            },
        )
        clear, _ = device.issue_token(label="seed_demo")
        return clear
