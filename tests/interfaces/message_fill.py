"""Fill any rclpy message with distinct, non-default values, so round-trip tests see every field.

Values are chosen to survive serialisation exactly (float32-representable floats, in-range
integers) and include non-ASCII text, so a lost or truncated field cannot go unnoticed.
"""

from __future__ import annotations

import importlib
import random

from rosidl_parser.definition import (
    AbstractGenericString,
    AbstractNestedType,
    Array,
    BasicType,
    NamespacedType,
)

INTEGER_RANGES = {
    "int8": (-128, 127),
    "uint8": (0, 255),
    "char": (0, 255),
    "octet": (0, 255),
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
}


def message_class(namespaced: NamespacedType) -> type:
    module = importlib.import_module(".".join(namespaced.namespaces))
    return getattr(module, namespaced.name)


def fill_value(slot_type, rng: random.Random):
    if isinstance(slot_type, BasicType):
        name = slot_type.typename
        if name == "boolean":
            return True
        if name in ("float", "double"):
            return rng.randint(-4000, 4000) / 8.0 + 0.125
        low, high = INTEGER_RANGES[name]
        return rng.randint(max(low, 1), high)
    if isinstance(slot_type, AbstractGenericString):
        return f"région-{rng.randint(0, 10**6)} ✓ «{rng.random():.3f}»"
    if isinstance(slot_type, NamespacedType):
        return fill_message(message_class(slot_type), rng)
    if isinstance(slot_type, AbstractNestedType):
        size = slot_type.size if isinstance(slot_type, Array) else rng.randint(2, 3)
        values = [fill_value(slot_type.value_type, rng) for _ in range(size)]
        if isinstance(slot_type.value_type, BasicType) and slot_type.value_type.typename in (
            "uint8",
            "octet",
        ):
            return bytes(values)
        return values
    raise TypeError(f"no filler for {slot_type!r}")


def fill_message(cls: type, rng: random.Random):
    """An instance of ``cls`` whose every field holds a random non-default value."""
    msg = cls()
    for name, slot_type in zip(cls.get_fields_and_field_types(), cls.SLOT_TYPES, strict=True):
        setattr(msg, name, fill_value(slot_type, rng))
    return msg
