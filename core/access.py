"""Who may do what: roles as data, plus the few functions that apply them.

A caller is a `Principal`: anonymous, a customer or an operator (by API key),
the admin (by ADMIN_TOKEN), or a guest (no key, with REQUIRE_API_KEYS off).
Each role holds a set of permissions. What a customer may do to a booking also
depends on owning it: those checks answer 404, never 403, so that a ref_id
nobody showed you cannot be confirmed by probing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.errors import Forbidden, NotFound, Unauthorized

ANONYMOUS, GUEST, CUSTOMER, OPERATOR, ADMIN = "anonymous", "guest", "customer", "operator", "admin"
KEY_ROLES = (CUSTOMER, OPERATOR)  # the roles an API key can carry

# Permissions.
BOOK = "book"  # create bookings, owned by the caller
CANCEL = "cancel"  # cancel a booking: customers their own only
HANDLE = "handle"  # depart, arrive, deliver (the carrier's operations)
BULK_STATUS = "bulk_status"  # POST /api/admin/bookings/status/bulk
LIST = "list"  # list bookings: customers their own only
JOBS = "jobs"  # read the jobs one submitted
READ_ALL = "read_all"  # every booking in full, every job
ADMINISTER = "administer"  # everything under /api/admin
WEBHOOKS = "webhooks"  # manage webhook endpoints: a key its own, the admin (or a guest) all

# What each permission lets one do, for the problems that refuse it.
DOING = {
    BOOK: "create bookings",
    CANCEL: "cancel bookings",
    HANDLE: "depart, arrive or deliver bookings",
    BULK_STATUS: "apply bulk status updates",
    LIST: "list bookings",
    JOBS: "read jobs",
    READ_ALL: "read every booking",
    ADMINISTER: "use /api/admin",
    WEBHOOKS: "manage webhook endpoints",
}
CREDENTIAL = {CUSTOMER: "a customer's key", OPERATOR: "an operator's key", ADMIN: "the admin token"}

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    ANONYMOUS: frozenset(),
    CUSTOMER: frozenset({BOOK, CANCEL, LIST, JOBS, WEBHOOKS}),
    OPERATOR: frozenset({HANDLE, CANCEL, BULK_STATUS, LIST, JOBS, READ_ALL, WEBHOOKS}),
    ADMIN: frozenset({HANDLE, CANCEL, BULK_STATUS, LIST, JOBS, READ_ALL, ADMINISTER, WEBHOOKS}),
    # Keys not required (a local experiment): everything but administration.
    GUEST: frozenset({BOOK, CANCEL, HANDLE, BULK_STATUS, LIST, JOBS, READ_ALL, WEBHOOKS}),
}


@dataclass(frozen=True)
class Principal:
    role: str
    customer_id: str | None = None

    @property
    def permissions(self) -> frozenset[str]:
        return ROLE_PERMISSIONS[self.role]

    @property
    def scope(self) -> str:
        """Whose jobs, Idempotency-Keys and rate budgets these are: the customer, else the role."""
        return self.customer_id or self.role

    @property
    def authenticated(self) -> bool:
        return self.role not in (ANONYMOUS, GUEST)


ANONYMOUS_CALLER = Principal(ANONYMOUS)
GUEST_CALLER = Principal(GUEST)
ADMIN_CALLER = Principal(ADMIN)


def holders(permission: str) -> tuple[str, ...]:
    """The roles that hold `permission` (guest aside: it is a setting, not a role to ask for)."""
    return tuple(
        role for role, held in ROLE_PERMISSIONS.items() if permission in held and role != GUEST
    )


def authorize(principal: Principal, permission: str) -> None:
    """401 if a caller without credentials lacks `permission`, 403 if a known one does."""
    if permission in principal.permissions:
        return
    needed = " or ".join(CREDENTIAL[role] for role in holders(permission))
    if not principal.authenticated:
        raise Unauthorized(f"To {DOING[permission]}, send Authorization: Bearer with {needed}.")
    refused = f"{CREDENTIAL[principal.role]} may not {DOING[permission]}: that takes {needed}."
    raise Forbidden(refused[0].upper() + refused[1:])


def owns(principal: Principal, record: dict[str, Any]) -> bool:
    """True if the booking or job `record` belongs to the caller (a customer or operator)."""
    return principal.customer_id is not None and record.get("customer_id") == principal.customer_id


def sees_in_full(principal: Principal, booking: dict[str, Any]) -> bool:
    """The owner, operators and the admin see a booking in full; anyone else tracks it."""
    return READ_ALL in principal.permissions or owns(principal, booking)


def check_owner(principal: Principal, booking: dict[str, Any] | None, ref_id: str) -> None:
    """404 unless the caller may act on this booking as its owner (or on any booking)."""
    if booking is None or not sees_in_full(principal, booking):
        raise NotFound(f"No booking {ref_id!r}.")


def restricted_to(principal: Principal) -> str | None:
    """The one customer whose bookings the caller may see and act on; None: every booking."""
    return None if READ_ALL in principal.permissions else principal.customer_id


def webhook_owner(principal: Principal) -> str | None:
    """Whose webhook endpoints the caller manages, and who owns those it makes:
    a key's customer (or operator); None for the admin and a guest, who manage
    every endpoint and own theirs as no customer."""
    return principal.customer_id


def may_read_job(principal: Principal, job: dict[str, Any]) -> bool:
    """A job is its submitter's; operators and the admin read every job."""
    return READ_ALL in principal.permissions or owns(principal, job)
