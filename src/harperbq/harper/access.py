"""Is the sync's user there, with the permission it needs, on one Harper node (`config check`)?

Why per node: Harper's docs say users and roles are not replicated by default, so a node added
later, or a cluster where they do not replicate, can lack the user while the others work. The
check logs in (`user_info`) and reads the role it reports. harperbq creates databases, tables and
attributes and reads `cluster_status`; it is run and tested with a `super_user` role, which is
what the check asks for.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from harperbq.harper.client import HarperClient
from harperbq.harper.errors import AuthenticationError

Status = Literal["ok", "missing user", "missing permission", "unreachable"]
NEEDED = "super_user"


@dataclass(frozen=True)
class NodeAccess:
    url: str
    status: Status
    detail: str
    fix: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _role(answer: Any) -> tuple[str, Mapping[str, Any]]:
    role = answer.get("role") if isinstance(answer, Mapping) else None
    if not isinstance(role, Mapping):
        return "?", {}
    permission = role.get("permission")
    return str(role.get("role", "?")), permission if isinstance(permission, Mapping) else {}


def check_access(client: HarperClient) -> NodeAccess:
    """Log in on the node `client` points at and judge the user's role there."""
    user, url = client.username, client.url
    try:
        answer = client.operation({"operation": "user_info"}, idempotent=True)
    except AuthenticationError:
        add = {
            "operation": "add_user",
            "role": NEEDED,
            "username": user,
            "password": "<the sync's password>",
            "active": True,
        }
        return NodeAccess(
            url,
            "missing user",
            f"Harper refused user '{user}' (no such user on this node, or another password)",
            f"create the user on this node: {json.dumps(add)}",
        )
    except Exception as exc:
        return NodeAccess(url, "unreachable", f"{type(exc).__name__}: {exc}", None)
    role, permission = _role(answer)
    if permission.get(NEEDED) is True:
        return NodeAccess(url, "ok", f"user '{user}', role {role}")
    alter = {"operation": "alter_user", "username": user, "role": NEEDED}
    return NodeAccess(
        url,
        "missing permission",
        f"user '{user}' has role {role} without {NEEDED}",
        f"give the user a {NEEDED} role on this node: {json.dumps(alter)}",
    )
