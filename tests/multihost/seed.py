"""Run inside a host of the multi-host harness (`python -m tests.multihost.seed`): the personas the
tests need in the lab's own database. Prints JSON: the owner's session cookie, the outsider's,
and one camera (id and clear token) per `--cameras`."""
import argparse
import json
import os

import django


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cameras", type=int, default=1)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    django.setup()
    from django.contrib.auth import get_user_model
    from django.test import Client

    from accounts.models import Membership, Organisation, Role
    from streams.models import Device

    def member(org, username, role):
        user = get_user_model().objects.create_user(username=username, password="password")
        Membership.objects.create(organisation=org, user=user, role=role)
        client = Client()
        client.force_login(user)
        return client.cookies["sessionid"].value

    acme = Organisation.objects.create(name="Acme", slug="acme")
    globex = Organisation.objects.create(name="Globex", slug="globex")
    cameras = []
    for n in range(args.cameras):
        device = Device.objects.create(organisation=acme, name=f"Camera {n}", location="Lab")
        token, _row = device.issue_token()
        cameras.append({"id": str(device.id), "token": token})
    print(json.dumps({"owner": member(acme, "alice", Role.OWNER), "outsider": member(globex, "mallory", Role.OWNER),
                      "cameras": cameras}))


if __name__ == "__main__":
    main()
