"""Rules that tie two fields together (or a field to the time a request is
received), which JSON Schema cannot state: each schema lists its own in TIED."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from core import awb
from core.webhook_endpoints import ALL_EVENTS


@dataclass(frozen=True)
class TiedFields:
    """A rule that ties two fields together (or a field to the time the request
    is received), which JSON Schema cannot state. A schema lists its rules in
    TIED; an operation taking it states them in its description and its 400's
    (ingress.docs), and the 400 names `field` with `message`."""

    field: str
    message: str
    statement: str


DIFFERENT_ENDS = "Must differ from origin."
ARRIVES_AFTER = "Must be after departure_ts."
DIFFERENT_ENDS_RULE = TiedFields(
    "destination", DIFFERENT_ENDS, "`destination` must differ from `origin` (in any case)"
)
ARRIVES_AFTER_RULE = TiedFields(
    "arrival_ts", ARRIVES_AFTER, "`arrival_ts` must be after `departure_ts`"
)
EVERY_EVENT_ALONE = f'"{ALL_EVENTS}" stands alone: ["{ALL_EVENTS}"], or event types.'
EVERY_EVENT_ALONE_RULE = TiedFields(
    "events", EVERY_EVENT_ALONE, f'`events` holds `"{ALL_EVENTS}"` only as its one item'
)
# A milestone is what happened: a time ahead of ours by more than a reporter's
# clock may be is a typo (or a plan, which FSU does not carry).
MILESTONE_AHEAD = timedelta(minutes=5)
NOT_AHEAD = "Must not be in the future."
NOT_AHEAD_RULE = TiedFields(
    "at", NOT_AHEAD, "`at` must not be later than the time it is received (5 minutes' slack)"
)
# A booking's dimension lines describe every piece once (core.measures).
PIECES_DIMENSIONED = "The dimension lines' counts must add up to pieces."
PIECES_DIMENSIONED_RULE = TiedFields(
    "dimensions",
    PIECES_DIMENSIONED,
    "the `count`s of `dimensions`, when given, add up to `pieces`",
)
# An AWB's check digit (core.awb), which no pattern states; and the AWBs of
# RadiantGo's own prefix, which only it issues (checked as the create is accepted).
AWB_CHECK_DIGIT_RULE = TiedFields(
    "awb", awb.CHECK_DIGIT_MESSAGE, "`awb`'s check digit (its last) must be its serial mod 7"
)
AWB_RESERVED_RULE = TiedFields(
    "awb",
    awb.RESERVED_MESSAGE,
    "`awb` must not be of RadiantGo's own prefix (the AWB_PREFIX setting), whose"
    " numbers it issues itself",
)
