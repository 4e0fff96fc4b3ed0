"""Roles as data: who holds what, and the 401 / 403 / 404 each refusal becomes."""

import pytest

from core import access
from core.errors import Forbidden, NotFound, Unauthorized

SHIPPER = access.Principal(access.CUSTOMER, "cus_0000000000000001")
CARRIER = access.Principal(access.OPERATOR, "cus_0000000000000002")


def test_who_holds_each_permission():
    assert access.holders(access.BOOK) == (access.CUSTOMER,)
    assert access.holders(access.HANDLE) == (access.OPERATOR, access.ADMIN)
    assert access.holders(access.ADMINISTER) == (access.ADMIN,)
    assert set(access.holders(access.JOBS)) == {access.CUSTOMER, access.OPERATOR, access.ADMIN}
    # A guest (keys not required) may do all but administer.
    assert access.ROLE_PERMISSIONS[access.GUEST] == (
        access.ROLE_PERMISSIONS[access.ADMIN] - {access.ADMINISTER}
    ) | {access.BOOK}


def test_refusals_are_401_for_strangers_and_403_for_known_callers():
    with pytest.raises(Unauthorized):
        access.authorize(access.ANONYMOUS_CALLER, access.BOOK)
    with pytest.raises(Forbidden):
        access.authorize(CARRIER, access.BOOK)
    with pytest.raises(Forbidden):
        access.authorize(SHIPPER, access.HANDLE)
    access.authorize(SHIPPER, access.BOOK)
    access.authorize(access.ADMIN_CALLER, access.HANDLE)


def test_a_customer_acts_on_its_own_bookings_only_and_never_learns_of_others():
    mine = {"customer_id": SHIPPER.customer_id}
    theirs = {"customer_id": "cus_0000000000000009"}
    nobodys = {"customer_id": None}
    access.check_owner(SHIPPER, mine, "RG000000001")
    for booking in (theirs, nobodys, None):
        with pytest.raises(NotFound):
            access.check_owner(SHIPPER, booking, "RG000000001")
    for caller in (CARRIER, access.ADMIN_CALLER):
        access.check_owner(caller, theirs, "RG000000001")
        assert access.restricted_to(caller) is None
    assert access.restricted_to(SHIPPER) == SHIPPER.customer_id
    # A caller without a customer never owns the bookings that have none.
    assert not access.owns(access.ANONYMOUS_CALLER, nobodys)


def test_scopes_keep_callers_apart():
    assert SHIPPER.scope == SHIPPER.customer_id
    assert access.ADMIN_CALLER.scope == "admin"
    assert not access.ANONYMOUS_CALLER.authenticated and not access.GUEST_CALLER.authenticated
    assert access.may_read_job(SHIPPER, {"customer_id": SHIPPER.customer_id})
    assert not access.may_read_job(SHIPPER, {"customer_id": None})
    assert access.may_read_job(CARRIER, {"customer_id": SHIPPER.customer_id})
