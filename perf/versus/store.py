"""The synchronous service's PostgreSQL schema and SQL, and what a benchmark sets
up around it (its database, its callers, bookings to depart).

The tables hold what RadiantGo's collections hold for a booking: the booking
(with an air waybill number issued from a sequence, PPP-SSSSSSSC with the
serial mod 7 as check digit, as core.awb issues them), its events (the
timeline, and the outbox of webhooks: `dispatched`), and API keys (only their
SHA-256). The indexes are those RadiantGo keeps for the same reads: a booking
by ref_id and by AWB, the lists by customer (and status) in created order, a
booking's timeline, the events not yet dispatched.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable

import psycopg
from psycopg import sql

CUSTOMER, OPERATOR = "customer", "operator"
BOOKED, DEPARTED = "BOOKED", "DEPARTED"
KEY_PREFIX = "vsk_"

SCHEMA = """
CREATE TABLE api_keys (
    key_hash text PRIMARY KEY,
    customer_id text NOT NULL,
    role text NOT NULL CHECK (role IN ('customer', 'operator')),
    disabled_at timestamptz
);
CREATE SEQUENCE awb_serials MINVALUE 1 MAXVALUE 9999999;
CREATE FUNCTION issue_awb() RETURNS text LANGUAGE sql VOLATILE AS $$
    SELECT {prefix} || '-' || to_char(n, 'FM0000000') || (n % 7)::text
    FROM nextval('awb_serials') AS n
$$;
CREATE TABLE bookings (
    ref_id text PRIMARY KEY,
    awb text NOT NULL UNIQUE,
    customer_id text,
    origin text NOT NULL,
    destination text NOT NULL,
    pieces integer NOT NULL,
    weight_kg double precision NOT NULL,
    dimensions jsonb,
    volume_cm3 bigint,
    customer_name text,
    customer_email text,
    flight_ids text[],
    status text NOT NULL,
    version integer NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX bookings_of_customer ON bookings (customer_id, created_at DESC, ref_id DESC);
CREATE INDEX bookings_of_customer_by_status
    ON bookings (customer_id, status, created_at DESC, ref_id DESC);
CREATE TABLE booking_events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    booking_id text NOT NULL REFERENCES bookings (ref_id),
    type text NOT NULL,
    code text,
    status text NOT NULL,
    version integer NOT NULL,
    at_ts timestamptz NOT NULL,
    location text,
    notes text,
    flight_number text,
    dispatched boolean NOT NULL DEFAULT false
);
CREATE INDEX booking_events_timeline ON booking_events (booking_id, at_ts DESC);
CREATE INDEX booking_events_outbox ON booking_events (id) WHERE NOT dispatched;
"""

BOOKING_COLUMNS = (
    "ref_id, awb, customer_id, origin, destination, pieces, weight_kg, dimensions,"
    " volume_cm3, customer_name, customer_email, flight_ids, status, version,"
    " created_at, updated_at"
)

# The client's AWB, or one issued (COALESCE evaluates issue_awb() only without one).
INSERT_BOOKING = f"""
INSERT INTO bookings ({BOOKING_COLUMNS})
VALUES (%(ref_id)s, COALESCE(%(awb)s, issue_awb()), %(customer_id)s, %(origin)s,
        %(destination)s, %(pieces)s, %(weight_kg)s, %(dimensions)s, %(volume_cm3)s,
        %(customer_name)s, %(customer_email)s, %(flight_ids)s, 'BOOKED', 1, now(), now())
RETURNING {BOOKING_COLUMNS}
"""
INSERT_EVENT = """
INSERT INTO booking_events (booking_id, type, code, status, version, at_ts,
                            location, notes, flight_number)
VALUES (%(booking_id)s, %(type)s, %(code)s, %(status)s, %(version)s, %(at_ts)s,
        %(location)s, %(notes)s, %(flight_number)s)
"""
LOCK_BOOKING = "SELECT status, customer_id FROM bookings WHERE ref_id = %s FOR UPDATE"
# Later than the booking's last change, so its timeline sorts in order
# (core.transitions.transition_time does the same).
MOVE_BOOKING = f"""
UPDATE bookings
SET status = %(status)s, version = version + 1,
    updated_at = greatest(now(), updated_at + interval '1 millisecond')
WHERE ref_id = %(ref_id)s
RETURNING {BOOKING_COLUMNS}
"""
FIND_KEY = "SELECT customer_id, role FROM api_keys WHERE key_hash = %s AND disabled_at IS NULL"


def key_hash(api_key: str) -> str:
    return hashlib.sha256(api_key.encode("utf-8", "surrogatepass")).hexdigest()


def server_dsn(dsn: str) -> str:
    """The same server's maintenance database: where databases are created and dropped."""
    return psycopg.conninfo.make_conninfo(dsn, dbname="postgres")


def create_database(dsn: str) -> None:
    """The database `dsn` names, anew (one left by an interrupted run is dropped first)."""
    name = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(server_dsn(dsn), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(dsn: str) -> None:
    name = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(server_dsn(dsn), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def create_schema(dsn: str, awb_prefix: str) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute(sql.SQL(SCHEMA).format(prefix=sql.Literal(awb_prefix)))


def create_caller(dsn: str, role: str) -> tuple[str, str]:
    """A caller of `role` with a new API key: (customer_id, api_key)."""
    customer_id = f"cus_{secrets.token_hex(8)}"
    api_key = KEY_PREFIX + secrets.token_urlsafe(32)
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO api_keys (key_hash, customer_id, role) VALUES (%s, %s, %s)",
            (key_hash(api_key), customer_id, role),
        )
    return customer_id, api_key


def new_ref_id() -> str:
    """RG and 9 digits or capitals, as RadiantGo's references."""
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return "RG" + "".join(secrets.choice(alphabet) for _ in range(9))


def seed_bookings(dsn: str, body: dict, count: int, customer_id: str) -> list[str]:
    """`count` BOOKED bookings of `body` owned by `customer_id`, each with its
    BOOKED event, copied in directly (not measured); their ref_ids."""
    refs = [new_ref_id() for _ in range(count)]
    columns = "ref_id, awb, customer_id, origin, destination, pieces, weight_kg"
    same = (customer_id, body["origin"], body["destination"], body["pieces"], body["weight_kg"])
    same += (BOOKED, 1, "now", "now")
    with psycopg.connect(dsn) as conn:
        awbs = _issued_awbs(conn, count)
        with conn.cursor().copy(
            f"COPY bookings ({columns}, status, version, created_at, updated_at) FROM STDIN"
        ) as copy:
            for ref_id, awb in zip(refs, awbs, strict=True):
                copy.write_row((ref_id, awb, *same))
        conn.execute(
            "INSERT INTO booking_events (booking_id, type, code, status, version, at_ts)"
            " SELECT ref_id, 'BOOKING_CREATED', 'BKD', status, 1, created_at FROM bookings"
            " WHERE ref_id = ANY(%s)",
            (refs,),
        )
    return refs


def _issued_awbs(conn: psycopg.Connection, count: int) -> Iterable[str]:
    rows = conn.execute("SELECT issue_awb() FROM generate_series(1, %s)", (count,)).fetchall()
    return [awb for (awb,) in rows]
