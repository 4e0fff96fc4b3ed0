"""`make migrate`: bring the database up to date (core.migrations), as
`make run` and compose's `migrate` service do before the app's processes start.

python -m tools.migrate [--wait 60]     # MONGODB_URI, or the embedded server's port
"""

from __future__ import annotations

import time

import click
from pymongo.errors import ConnectionFailure, PyMongoError

from core.db import connect_mongo, database
from core.migrations import migrate
from core.settings import Settings, SettingsError, load_settings, replace


class DatabaseDown(Exception):
    """MongoDB did not answer in time."""


def migrate_when_up(settings: Settings, wait_s: float) -> dict[str, int]:
    """Migrate once MongoDB answers (a database started alongside may still be
    opening its storage); DatabaseDown if it does not within `wait_s`."""
    client = connect_mongo(settings)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                client.admin.command("ping")
                break
            except ConnectionFailure as exc:
                if time.monotonic() >= deadline:
                    raise DatabaseDown(f"MongoDB does not answer ({exc})") from None
                time.sleep(0.2)
        return migrate(database(client), settings)
    finally:
        client.close()


def summary(done: dict[str, int]) -> str:
    changed = ", ".join(f"{name}: {count}" for name, count in done.items())
    return f"Database migrated: indexes ensured; documents changed by {changed}"


@click.command()
@click.option(
    "--wait",
    "wait_s",
    type=float,
    default=0.0,
    show_default=True,
    help="Seconds to wait for MongoDB to answer first.",
)
def main(wait_s: float) -> None:
    """Ensure the indexes and run each data migration not run yet (idempotent)."""
    from tools.stack import database_uri  # tools.stack runs this module's migrate_when_up

    try:
        settings = load_settings()
    except SettingsError as exc:
        raise click.ClickException(f"bad setting: {exc}") from None
    settings = replace(settings, MONGODB_URI=database_uri(settings))
    try:
        click.echo(summary(migrate_when_up(settings, wait_s)))
    except (DatabaseDown, PyMongoError) as exc:
        raise click.ClickException(f"not migrated: {exc}") from None


if __name__ == "__main__":
    main()
