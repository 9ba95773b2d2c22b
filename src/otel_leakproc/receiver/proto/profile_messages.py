"""The message classes of profile.proto for the decoder, without the pure-Python protobuf machinery that a
generated `_pb2` module brings along.

`profile_pb2` imports `descriptor_pool`, which imports `python_message` and with it `text_format`, the
Python encoder and decoder and the well-known types: about 7 ms of each `analyze` on a pair, for code the
upb backend (protobuf's default) never runs. With upb, this module adds the same serialized file
(`profile_descriptor.SERIALIZED`, written by `make proto` from `profile_pb2`) to the same default pool and
makes each message's class as the generated module's builder does. upb keeps one class per message type,
so these are the very classes `profile_pb2` gives when both are imported, in either order. With any other
backend, or a protobuf whose upb module is elsewhere, the classes are `profile_pb2`'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from otel_leakproc.receiver.proto.profile_pb2 import (
        Function,
        Label,
        Line,
        Location,
        Mapping,
        Profile,
        ProfileLazyParts,
        ProfileLazySamples,
        Sample,
        SampleValuesOnly,
        ValueType,
    )

__all__ = [
    "Function",
    "Label",
    "Line",
    "Location",
    "Mapping",
    "Profile",
    "ProfileLazyParts",
    "ProfileLazySamples",
    "Sample",
    "SampleValuesOnly",
    "ValueType",
]
GENERATED_MODULE = "otel_leakproc.receiver.proto.profile_pb2"
MESSAGES = tuple(__all__)  # every message of profile.proto (a test checks it against the generated module)


def _upb_classes() -> dict[str, type] | None:
    """Each message's class from upb's default pool, or None when upb is not the backend in use."""
    try:
        from google._upb import _message  # noqa: PLC0415
        from google.protobuf import message  # noqa: PLC0415
        from google.protobuf.internal import api_implementation  # noqa: PLC0415
    except ImportError:
        return None
    if api_implementation.Type() != "upb":  # PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python, for one
        return None
    from otel_leakproc.receiver.proto.profile_descriptor import SERIALIZED  # noqa: PLC0415

    file = _message.default_pool.AddSerializedFile(SERIALIZED)  # the generated module's call, same bytes
    classes: dict[str, type] = {}
    for name in MESSAGES:
        descriptor = file.message_types_by_name[name]
        attributes = {"DESCRIPTOR": descriptor, "__module__": GENERATED_MODULE, "__qualname__": name}
        classes[name] = _message.MessageMeta(name, (message.Message,), attributes)
    return classes


def _generated_classes() -> dict[str, type]:
    from otel_leakproc.receiver.proto import profile_pb2  # noqa: PLC0415

    return {name: getattr(profile_pb2, name) for name in MESSAGES}


globals().update(_upb_classes() or _generated_classes())
