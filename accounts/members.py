"""Changing a member's role and removing a member, never leaving an organisation without an owner.

Both go through Membership.save()/delete() (never queryset update()/delete()), so the
model signals that close a revoked person's open sockets fire. The organisation's
owner rows are locked while deciding, so two owners demoting each other at the same
moment cannot both succeed.
"""
from __future__ import annotations

from django.db import transaction

from accounts.models import Membership, Role

LAST_OWNER_MESSAGE = "An organisation needs at least one owner: make someone else owner first."


class LastOwner(Exception):
    """The change would leave the organisation with no owner."""

    def __init__(self):
        super().__init__(LAST_OWNER_MESSAGE)


def leaves_no_owner(current_role: str, new_role: str | None, other_owners: int) -> bool:
    """Pure rule: would changing a member from current_role to new_role (None: removed) leave no owner?"""
    return current_role == Role.OWNER and new_role != Role.OWNER and other_owners == 0


def _other_owners(membership: Membership, lock: bool = False) -> int:
    owners = Membership.objects.filter(organisation_id=membership.organisation_id, role=Role.OWNER)
    if lock:
        owners = owners.select_for_update()
    return sum(1 for row in owners.only("pk") if row.pk != membership.pk)


def is_last_owner(membership: Membership) -> bool:
    return leaves_no_owner(membership.role, None, _other_owners(membership))


def change_role(membership: Membership, role: str) -> Membership:
    if role not in Role.values:
        raise ValueError(f"unknown role {role!r}")
    with transaction.atomic():
        current = Membership.objects.select_for_update().get(pk=membership.pk)
        if leaves_no_owner(current.role, role, _other_owners(current, lock=True)):
            raise LastOwner()
        current.role = role
        current.save(update_fields=["role"])
    membership.role = role
    return current


def remove_member(membership: Membership) -> None:
    with transaction.atomic():
        current = Membership.objects.select_for_update().get(pk=membership.pk)
        if leaves_no_owner(current.role, None, _other_owners(current, lock=True)):
            raise LastOwner()
        current.delete()
