"""manage.py create_organisation NAME --owner USERNAME [--email E] [--slug S] [--password P]

Creates an organisation and makes USERNAME its owner, creating the login if it
does not exist. The password of a new login is asked for at a terminal, or
generated and printed when there is none (scripts, CI). --password works too but
is visible to other users in `ps`. Owners get the staff flag so they can use
the admin, where they see only their own organisations.
"""
import getpass
import sys

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils.text import slugify

from accounts.management.credentials import random_password
from accounts.models import Membership, Organisation, Role


class Command(BaseCommand):
    help = "Create an organisation with an owner (creating the owner's login if needed)."

    def add_arguments(self, parser):
        parser.add_argument("name", help="Display name, e.g. 'Acme Security'")
        parser.add_argument("--owner", required=True, help="Username of the owner")
        parser.add_argument("--email", default="", help="E-mail of a new owner login")
        parser.add_argument("--slug", help="URL-safe identifier (default: from the name)")
        parser.add_argument("--password", help="Password of a new owner login (visible in ps; prefer the prompt)")
        parser.add_argument("--no-input", action="store_true", help="Never prompt; generate a password instead")

    def handle(self, *args, name, owner, email, slug, password, no_input, **options):
        name = name.strip()
        slug = slug or slugify(name)[:60]
        if not name or not slug:
            raise CommandError("The organisation needs a name with at least one letter or digit.")
        if Organisation.objects.filter(slug=slug).exists():
            raise CommandError(f"An organisation with slug {slug!r} already exists; choose another with --slug.")

        User = get_user_model()
        user = User._default_manager.filter(username=owner).first()
        shown_password = None
        if user is None:
            if password is None and not no_input and sys.stdin.isatty():
                password = self._prompt_password(owner)
            if password is None:
                password = shown_password = random_password()
            try:
                validate_password(password, User(username=owner, email=email))
            except ValidationError as exc:
                raise CommandError("Password rejected: " + " ".join(exc.messages)) from None
        elif password is not None:
            raise CommandError(f"User {owner!r} exists already; --password only applies to a new login.")

        with transaction.atomic():
            if user is None:
                user = User._default_manager.create_user(username=owner, email=email, password=password)
                created = True
            else:
                created = False
            if not user.is_staff:
                user.is_staff = True
                user.save(update_fields=["is_staff"])
            org = Organisation.objects.create(name=name, slug=slug)
            Membership.objects.create(organisation=org, user=user, role=Role.OWNER)

        self.stdout.write(f"Created organisation {org.name!r} (slug {org.slug}, id {org.pk}).")
        self.stdout.write(f"Owner: {user.get_username()} ({'new login' if created else 'existing login'}; can use /admin/).")
        if shown_password:
            self.stdout.write(f"Password for {user.get_username()}: {shown_password}")
            self.stdout.write("It is shown only now; change it after the first login.")

    def _prompt_password(self, username):
        for _ in range(3):
            first = getpass.getpass(f"Password for {username}: ")
            if first and first == getpass.getpass("Again: "):
                return first
            self.stderr.write("Passwords were empty or did not match.")
        raise CommandError("No password given.")
