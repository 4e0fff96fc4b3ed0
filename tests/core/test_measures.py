"""core.measures against hand-computed cases: volume, volumetric weight (cm3 /
6,000) and chargeable weight (the greater, rounded up to the next 0.5 kg)."""

import pytest

from core import measures


def lines(*sizes):
    return [{"count": c, "length_cm": x, "width_cm": y, "height_cm": z} for c, x, y, z in sizes]


# (weight_kg, dimension lines, volume_m3, volumetric_weight_kg, chargeable_weight_kg),
# each worked out by hand.
CASES = [
    # no dimensions: the actual weight, rounded up to 0.5 kg
    (125.5, None, None, None, 125.5),
    (125.2, None, None, None, 125.5),
    (0.001, None, None, None, 0.5),
    (10_000, None, None, None, 10_000.0),
    # 50 x 40 x 30 = 60,000 cm3 = 10 kg volumetric: a tie, charged as 10
    (10, lines((1, 50, 40, 30)), 0.06, 10.0, 10.0),
    # 50 x 40 x 31 = 62,000 cm3 = 10.333 kg: the volume decides, up to 10.5
    (10, lines((1, 50, 40, 31)), 0.062, 10.333, 10.5),
    # 2 x 60 x 40 x 40 = 192,000 cm3 = 32 kg, far above the 3 kg weighed
    (3, lines((2, 60, 40, 40)), 0.192, 32.0, 32.0),
    # the same volume under a heavier load: the weight decides, up to 40.5
    (40.001, lines((2, 60, 40, 40)), 0.192, 32.0, 40.5),
    # 5 x 120 x 80 x 100 = 4,800,000 cm3 = 4.8 m3 = 800 kg
    (125.5, lines((5, 120, 80, 100)), 4.8, 800.0, 800.0),
    # two sizes: 3 x 100 x 100 x 100 + 2 x 50 x 50 x 50 = 3,250,000 cm3 = 541.667 kg
    (200, lines((3, 100, 100, 100), (2, 50, 50, 50)), 3.25, 541.667, 542.0),
    # 3,000 cm3 is exactly 0.5 kg; 3,001 cm3 (0.50017 kg) is charged as 1 kg
    (0.4, lines((1, 30, 10, 10)), 0.003, 0.5, 0.5),
    (0.4, lines((1, 30, 10, 10), (1, 1, 1, 1)), 0.003001, 0.5, 1.0),
    # 1 cm3 weighs 0.17 g by volume: shown as 0 g, still never charged below 0.5 kg
    (0.001, lines((1, 1, 1, 1)), 0.000001, 0.0, 0.5),
    # the largest booking: 1,000 pieces of 318 x 244 x 300 = 23,277,600,000 cm3
    (10_000, lines((1000, 318, 244, 300)), 23_277.6, 3_879_600.0, 3_879_600.0),
]


@pytest.mark.parametrize(("weight_kg", "dimensions", "m3", "volumetric", "chargeable"), CASES)
def test_measures_as_worked_out_by_hand(weight_kg, dimensions, m3, volumetric, chargeable):
    cm3 = measures.volume_cm3(dimensions)
    assert measures.shown(weight_kg, cm3) == {
        "volume_m3": m3,
        "volumetric_weight_kg": volumetric,
        "chargeable_weight_kg": chargeable,
    }


def test_volumes_are_exact_integers():
    assert measures.volume_cm3(lines((1000, 318, 244, 300))) == 23_277_600_000
    assert measures.volume_cm3(lines((7, 13, 11, 3))) == 3003
    assert measures.volume_cm3(None) is None and measures.volume_cm3([]) is None


def test_chargeable_compares_volume_against_weight_exactly():
    """6,000 cm3 per kg is 6 per gram: 3,000,006 cm3 outweighs 500 kg by 1 g, and
    so is charged one step higher, whatever a float would have made of it."""
    assert measures.chargeable_g(500_000, 3_000_000) == 500_000
    assert measures.chargeable_g(500_000, 3_000_006) == 500_500
    assert measures.chargeable_g(500_001, 3_000_000) == 500_500
