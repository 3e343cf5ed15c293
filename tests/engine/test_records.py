from __future__ import annotations

import struct
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.records import (
    BBO_STRUCT,
    RECORD_DTYPE,
    RECORD_SIZE,
    RECORD_STRUCT,
    Flag,
    Kind,
    Record,
    Side,
    format_decimal,
    records_from_array,
    to_decimal,
    to_fixed,
)


def test_record_is_one_cache_line() -> None:
    assert RECORD_SIZE == 64
    assert RECORD_DTYPE.itemsize == 64
    assert RECORD_STRUCT.size == BBO_STRUCT.size == 64


def test_numpy_view_and_struct_agree_on_every_field() -> None:
    rec = Record(
        seq=2**63 + 5,
        kind=Kind.TRADE,
        exchange=3,
        side=Side.SELL,
        flags=Flag.LAST,
        symbol=70000,
        exch_ts=-1,
        recv_ts=1_700_000_000_123_456_789,
        price=65000.12,
        size=0.00012,
        ref=2**64 - 1,
        aux=2**32 - 1,
        extra=12345,
        ask_price=0.0,
        ask_size=0.0,
    )
    raw = rec.to_bytes()
    row = np.frombuffer(raw, dtype=RECORD_DTYPE)[0]
    for name in (
        "seq",
        "kind",
        "exchange",
        "side",
        "flags",
        "symbol",
        "exch_ts",
        "recv_ts",
        "price",
        "size",
        "ref",
        "aux",
        "extra",
    ):
        assert row[name] == getattr(rec, name), name
    assert Record.from_bytes(raw).ref == 2**64 - 1


def test_bbo_overlays_the_ask_on_the_kind_specific_tail() -> None:
    raw = BBO_STRUCT.pack(1, Kind.BBO, 1, 0, 1, 9, 10, 11, 100.5, 1.25, 100.75, 3.5)
    rec = Record.from_bytes(raw)
    assert (rec.price, rec.size, rec.ask_price, rec.ask_size) == (100.5, 1.25, 100.75, 3.5)
    row = np.frombuffer(raw, dtype=RECORD_DTYPE)[0]
    assert (row["ask_price"], row["ask_size"]) == (100.75, 3.5)
    assert Record.from_bytes(rec.to_bytes()) == rec


def test_records_from_array_round_trips() -> None:
    arr = np.zeros(3, dtype=RECORD_DTYPE)
    arr["seq"] = [7, 8, 9]
    arr["price"] = [1.5, 2.5, 3.5]
    arr["kind"] = Kind.TRADE
    recs = records_from_array(arr)
    assert [r.seq for r in recs] == [7, 8, 9]
    assert [r.price for r in recs] == [1.5, 2.5, 3.5]
    assert Record.from_row(arr[1]) == recs[1]


# Exchange decimals: up to 15 significant digits, up to 10 decimals, as venues send them.
decimals_text = st.integers(0, 10).flatmap(
    lambda d: st.integers(0, 10 ** min(15, d + 7) - 1).map(
        lambda m: (f"{Decimal(m).scaleb(-d):.{d}f}", d)
    )
)


@given(decimals_text)
def test_float_plus_symbol_decimals_recovers_the_exact_decimal(case: tuple[str, int]) -> None:
    text, decimals = case
    value = float(text)  # what msgspec decodes from the exchange's string
    assert format_decimal(value, decimals) == text
    assert to_decimal(value, decimals) == Decimal(text)
    assert to_fixed(value, decimals) == int(text.replace(".", ""))


@pytest.mark.parametrize(
    ("text", "decimals"), [("0.00000001", 8), ("65432.12345678", 8), ("1234567.12345678", 8)]
)
def test_exact_decimals_of_real_quotes(text: str, decimals: int) -> None:
    assert format_decimal(float(text), decimals) == text


def test_struct_layout_is_little_endian_and_packed() -> None:
    raw = RECORD_STRUCT.pack(1, 2, 3, 4, 5, 6, 7, 8, 9.0, 10.0, 11, 12, 13)
    assert struct.unpack_from("<Q", raw, 0) == (1,)
    assert raw[8:12] == bytes([2, 3, 4, 5])
    assert struct.unpack_from("<I", raw, 12) == (6,)
    assert struct.unpack_from("<QII", raw, 48) == (11, 12, 13)
