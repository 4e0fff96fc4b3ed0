"""Cargo measures: volume, volumetric weight and chargeable weight, exactly.

Weight is kept in whole grams (grams) and volume in whole cubic
centimetres: a booking's dimensions are whole centimetres (as a waybill's
dimension line gives them), so its volume is an exact integer, and every
comparison below is integer arithmetic, never a float's.

- Volumetric weight: the IATA standard divisor, 6,000 cm3 per kg (a density of
  166.67 kg/m3). In grams that is 6 cm3 per gram, exactly.
- Chargeable weight: the greater of actual and volumetric weight, rounded UP
  to the next 0.5 kg, as airlines charge. Without dimensions the volume is
  unknown and the chargeable weight is the actual weight, rounded up alike:
  the rounding is the tariff's unit, whatever the weight was computed from.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

GRAMS_PER_KG = 1000
CM3_PER_KG = 6000  # the IATA volumetric divisor
CM3_PER_G = CM3_PER_KG // 1000
CM3_PER_M3 = 1_000_000
CHARGE_STEP_G = 500  # chargeable weight is charged in steps of 0.5 kg


def volume_cm3(dimensions: Iterable[Mapping[str, int]] | None) -> int | None:
    """The volume of a booking's dimension lines (None: no dimensions given)."""
    if not dimensions:
        return None
    return sum(d["count"] * d["length_cm"] * d["width_cm"] * d["height_cm"] for d in dimensions)


def grams(kg: float) -> int:
    return round(kg * GRAMS_PER_KG)


def kilograms(g: int) -> float:
    return g / GRAMS_PER_KG


def cubic_centimetres(m3: float) -> int:
    return round(m3 * CM3_PER_M3)


def cubic_metres(cm3: int) -> float:
    return cm3 / CM3_PER_M3


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def volumetric_g(cm3: int) -> int:
    """The volumetric weight of `cm3`, in grams rounded to the nearest (half up)."""
    return (cm3 + CM3_PER_G // 2) // CM3_PER_G


def chargeable_g(weight_g: int, cm3: int | None) -> int:
    """max(actual, volumetric) rounded up to the next CHARGE_STEP_G, compared
    in exact integers (cm3 against grams x 6, not a rounded volumetric weight)."""
    steps = _ceil_div(weight_g, CHARGE_STEP_G)
    if cm3 is not None:
        steps = max(steps, _ceil_div(cm3, CHARGE_STEP_G * CM3_PER_G))
    return steps * CHARGE_STEP_G


def shown(weight_kg: float, cm3: int | None) -> dict[str, Any]:
    """What a booking shows of its measures: volume_m3 and volumetric_weight_kg
    (null without dimensions), chargeable_weight_kg."""
    return {
        "volume_m3": None if cm3 is None else cubic_metres(cm3),
        "volumetric_weight_kg": None if cm3 is None else kilograms(volumetric_g(cm3)),
        "chargeable_weight_kg": kilograms(chargeable_g(grams(weight_kg), cm3)),
    }
