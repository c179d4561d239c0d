"""Revocation reaches open browser sockets: the per-user group and the re-check.

Every browser socket (viewer, wall, publish) joins groups.user_group(user) as soon
as it knows the user, *before* its access check, so a change committed between
the check and the join cannot be missed. accounts/signals.py announces every
change of a person's access after commit and streams/signals.py relays it here as
"access.changed". The socket then asks again, the same way it asked at connect:
the session (so a deactivated user or a changed password fails, exactly as in
auth.user_from_scope) and the consumer's own tenant lookup (access_allows). If the
answer shrank, it closes with 4013 ACCESS_REVOKED after an error message; the
client may reconnect and gets what it may still do (or 4401/4403/4404).
Sockets whose access did not shrink stay open.
"""
from __future__ import annotations

import logging

from streams import auth
from streams.groups import user_group
from sightline_agent.protocol import Close

log = logging.getLogger("streams.consumers.access")


class AccessWatcher:
    """Mixin for SightlineSocket subclasses; they implement access_allows(user)."""

    access_user_id = None

    async def watch_access(self, user) -> None:
        self.access_user_id = user.pk
        group = user_group(user.pk)
        await self.channel_layer.group_add(group, self.channel_name)
        self.groups.append(group)  # Channels discards it when the socket closes

    async def access_allows(self, user) -> bool:
        """Hook: may `user` (freshly loaded) keep this socket open as it is?"""
        raise NotImplementedError

    async def access_changed(self, event) -> None:
        if self.closing or not self.accepted or self.access_user_id is None:
            return
        logged_out = event.get("session_key")
        if logged_out is not None:  # one session ended; the user's other sessions keep their sockets
            if logged_out == auth._session_key(self.scope):  # the cookie user_from_scope reads
                await self._revoked("you logged out")
            return
        try:
            user = await auth.user_from_scope(self.scope)
            if not user.is_authenticated or user.pk != self.access_user_id:
                return await self._revoked("your session is no longer valid; log in again")
            allowed = await self.access_allows(user)
        except Exception:  # database away: fail closed; the reconnect asks again
            log.warning("%s socket: could not re-check access of user %s", self.endpoint,
                        self.access_user_id, exc_info=True)
            allowed = False
        if not allowed:
            await self._revoked("your access changed; reconnect to see what you may still do")

    async def _revoked(self, message: str) -> None:
        log.info("%s socket of user %s closed: access revoked", self.endpoint, self.access_user_id)
        await self.refuse(Close.ACCESS_REVOKED, message)
