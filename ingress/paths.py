"""Ids in paths are checked by the router, before any view, cache or database
sees them: `<ref_id:ref_id>` takes a booking reference and nothing else.

One converter per id shape (core.ids.PATH_IDS), named after its parameter. A
path segment of another shape is a 404 problem that says what an id looks
like; the OpenAPI document states each parameter's pattern.
"""

from __future__ import annotations

import functools
import re

from flask import Flask
from flask_smorest import Api
from werkzeug.exceptions import NotFound
from werkzeug.routing import BaseConverter

from core import awb
from core.ids import PATH_IDS, Shape


class IdConverter(BaseConverter):
    """A path segment that must have `shape` (core.ids)."""

    shape: Shape
    part_isolating = True

    def to_python(self, value: str) -> str:
        # Any segment reaches here (the regex is the default's), so that a
        # malformed id gets an answer that says so, not the router's bare 404.
        if not self.shape.matches(value):
            raise NotFound(f"{value!r} is not {self.shape.described()}.")
        return value


class AwbConverter(IdConverter):
    """An air waybill number: its check digit checked too (core.awb), and the
    hyphen, if left out, put in (PPP-SSSSSSSC, as bookings hold it)."""

    def to_python(self, value: str) -> str:
        value = super().to_python(value)
        broken = awb.broken_rule(value)
        if broken is not None:
            raise NotFound(f"{value!r} is not a valid air waybill number: {broken}")
        return awb.normalized(value)


CONVERTERS = {"awb": AwbConverter}  # the ids checked beyond their shape


def _converter(name: str, shape: Shape) -> type[IdConverter]:
    return type(f"{name}_converter", (CONVERTERS.get(name, IdConverter),), {"shape": shape})


def install_path_ids(app: Flask, api: Api) -> None:
    """Register a converter per path id, in the app's router and in the document
    (before any blueprint that names one is registered)."""
    for name, shape in PATH_IDS.items():
        converter = _converter(name, shape)
        app.url_map.converters[name] = converter
        api.register_converter(
            converter,
            lambda c: {"type": "string", "pattern": c.shape.pattern, "example": c.shape.example},
        )


@functools.cache
def metric_rule(rule: str) -> str:
    """A route as the metrics name it, /api/bookings/<ref_id>, whatever checks
    the id (dashboards and alerts name endpoints this way)."""
    return re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", r"<\1>", rule)
