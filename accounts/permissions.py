"""Who may do what: pure functions of a role, unit-tested without a database.

Actions:
  view     -- watch live, list and replay recordings
  control  -- send commands to a device (brightness, fps, ...), publish from a browser
  export   -- export a clip of a recording
  manage   -- create/rotate/revoke devices and tokens, manage members, hold segments
"""
from accounts.models import Role

VIEW = "view"
CONTROL = "control"
EXPORT = "export"
MANAGE = "manage"
ACTIONS = (VIEW, CONTROL, EXPORT, MANAGE)

_ALLOWED = {
    Role.OWNER: {VIEW, CONTROL, EXPORT, MANAGE},
    Role.OPERATOR: {VIEW, CONTROL, EXPORT},
    Role.VIEWER: {VIEW},
}


def role_allows(role: str | None, action: str) -> bool:
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    if role is None:
        return False
    return action in _ALLOWED.get(role, set())


def roles_allowing(action: str) -> list[str]:
    return [role for role, actions in _ALLOWED.items() if role_allows(role, action)]
