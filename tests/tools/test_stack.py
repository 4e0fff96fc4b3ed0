"""`make run`'s set-up: the demo customer and operator whose keys it prints."""

from core.clock import utcnow
from core.customers import disable_customer, hash_api_key, key_is_active
from tools.stack import ensure_demo_callers


def test_demo_callers_keep_their_keys_until_the_database_forgets_them(services):
    first = ensure_demo_callers(services.db, {"ADMIN_TOKEN": "kept"})
    assert first["ADMIN_TOKEN"] == "kept"
    keys = (first["DEMO_CUSTOMER_KEY"], first["DEMO_OPERATOR_KEY"])
    assert all(key_is_active(services.db, key) for key in keys)
    roles = [services.db.customers.find_one({"key_hash": hash_api_key(k)})["role"] for k in keys]
    assert roles == ["customer", "operator"]

    assert ensure_demo_callers(services.db, first) == first  # a restart: the same keys

    customer = services.db.customers.find_one({"key_hash": hash_api_key(keys[0])})
    disable_customer(services.db, services.cache, customer["_id"], now=utcnow(), ttl=60)
    again = ensure_demo_callers(services.db, first)
    assert again["DEMO_CUSTOMER_KEY"] != keys[0]
    assert again["DEMO_OPERATOR_KEY"] == keys[1]
    assert key_is_active(services.db, again["DEMO_CUSTOMER_KEY"])
