import json
import zlib
from datetime import UTC, datetime

import pytest

from core.cache_codec import (
    COMPRESS_ABOVE,
    compressed,
    decode_generational,
    dumps,
    encode_answer,
    split_answer,
)


def test_dates_are_written_as_the_api_writes_them():
    assert (
        dumps({"at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)})
        == '{"at":"2026-01-02T03:04:05.000Z"}'
    )


@pytest.mark.parametrize("size", [10, COMPRESS_ABOVE * 4])
def test_a_generational_value_reads_back_whatever_its_size(size):
    encoded = json.dumps({"g": 1, "v": "x" * size})
    stored = compressed(encoded)
    assert (len(stored) < len(encoded)) == (size >= COMPRESS_ABOVE)
    assert decode_generational(stored) == {"g": 1, "v": "x" * size}


@pytest.mark.parametrize("size", [10, COMPRESS_ABOVE * 4])
def test_an_answer_reads_back_with_its_generation_and_meta(size):
    body = b"[" + b"1," * size + b"1]"
    stored = encode_answer(7, body, b"3,9")
    assert split_answer(stored) == (7, b"3,9", body)


def test_what_is_not_an_answer_is_refused():
    with pytest.raises((ValueError, zlib.error)):
        split_answer(b'{"g": 1, "v": []}')
