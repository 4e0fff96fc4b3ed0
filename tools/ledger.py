"""The cargo-space ledger for operators (core.ledger).

python -m tools.ledger check     # every flight's books; exit 1 if any does not balance
python -m tools.ledger repair    # set each such flight right, under its flight lock

Both keep the audit's totals for /api/admin/performance (`ledger`), as beat's
hourly audit does (LEDGER_CHECK_INTERVAL).
"""

from __future__ import annotations

import json
import sys

import click

from core import ledger
from core.clock import utcnow
from core.services import connect_services
from core.settings import SettingsError, load_settings


def _services():
    try:
        return connect_services(load_settings())
    except SettingsError as exc:
        raise click.ClickException(f"bad setting: {exc}") from None


def _report(found: list[ledger.FlightLedger]) -> int:
    unbalanced = [f for f in found if not f.balanced]
    for flight in unbalanced:
        click.echo(json.dumps(flight.summary()))
    click.echo(f"{len(found)} flights checked, {len(unbalanced)} do not balance")
    return 1 if unbalanced else 0


@click.group()
def cli() -> None:
    """Audit and repair every flight's cargo space."""


@cli.command("check")
def check_command() -> None:
    """Report every flight whose booked weight does not match its reservations and bookings."""
    svc = _services()
    try:
        sys.exit(_report(ledger.check(svc.db, svc.redis, utcnow())))
    finally:
        svc.close()


@cli.command("repair")
def repair_command() -> None:
    """Set right every flight that does not balance; print what was done."""
    svc = _services()
    try:
        for repaired in ledger.repair(svc.db, svc.locks):
            click.echo(json.dumps(repaired))
        sys.exit(_report(ledger.check(svc.db, svc.redis, utcnow())))
    finally:
        svc.close()


if __name__ == "__main__":
    cli()
