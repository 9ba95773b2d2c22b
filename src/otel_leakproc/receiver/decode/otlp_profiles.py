"""OTLP profiles (`opentelemetry.proto.profiles.v1development`, v1.10+) -> pprof `Profile` messages.

The team has one summariser, and it works on pprof. So OTLP support is a pure conversion: every OTLP
`Profile` (one sample type each) becomes a pprof `Profile`, except that the Profiles of one
`ScopeProfiles` sharing `time_unix_nano` and `period_type` are merged back into one multi-column pprof
(a Go heap profile arrives as alloc_objects/alloc_space/inuse_objects/inuse_space Profiles). A Profile
that carries the original pprof bytes (`original_payload_format == "pprof"`) hands those bytes on as they
are, for the pprof decoder to parse once like any pprof upload.

Every index into the shared `ProfilesDictionary` is validated before it is followed (index 0 always
means "unset"), and every limit is checked before the work it bounds, so malformed or hostile input
(including senders on older, wire-incompatible versions of the protocol) ends in an
`InvalidProfileError`, never in an exception from deep inside.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from google.protobuf.unknown_fields import UnknownFieldSet
from opentelemetry.proto.collector.profiles.v1development.profiles_service_pb2 import (
    ExportProfilesServiceRequest,
)
from opentelemetry.proto.profiles.v1development.profiles_pb2 import ProfilesData

from otel_leakproc.errors import InvalidProfileError, PayloadTooLargeError, RejectReason
from otel_leakproc.receiver.decode.gzip_bound import gunzip_bounded, is_gzip
from otel_leakproc.receiver.decode.limits import DecodeLimits
from otel_leakproc.receiver.proto import profile_pb2

PROTOBUF_CONTENT_TYPES = frozenset({"application/x-protobuf", "application/protobuf"})
JSON_CONTENT_TYPES = frozenset({"application/json"})

# Labels handed to the summariser when the sender supplies them as attributes.
SESSION_ID_KEY = "__session_id__"

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_BUILD_ID_PREFIX = "process.executable.build_id"
_PRE_V110_HINT = (
    " (this looks like a sender older than OTLP profiles v1.10, where Sample.values was field 2;"
    " only v1.10+ is supported)"
)


@dataclass(frozen=True, slots=True)
class OtlpProfile:
    """One converted profile: a pprof message built from OTLP, or the original pprof bytes.

    Attributes:
        resource: resource attributes flattened to strings (`service.name`, `service.instance.id`,
            `k8s.*`, ...), plus profile-level attributes where the resource does not set the same key.
        scope: name of the instrumentation scope that produced the profile.
        profile: the equivalent pprof profile (several OTLP Profiles may be merged into its columns);
            None when the profile carried its original pprof, in `payload`.
        payload: the original pprof protobuf bytes (decompressed, not parsed here: the pprof decoder
            parses them once, as it does any pprof upload); b"" for a converted profile.
        payload_where: the field `payload` came from, to name it in errors.
        time_nanos: the OTLP Profile's `time_unix_nano`, for a payload whose pprof carries no time.
    """

    resource: dict[str, str]
    scope: str
    profile: profile_pb2.Profile | None
    payload: bytes = b""
    payload_where: str = ""
    time_nanos: int = 0


def parse_export_request(data: bytes, content_type: str, limits: DecodeLimits) -> ExportProfilesServiceRequest:
    """Parse an OTLP/HTTP (or gRPC) profiles export body; gzip must already be removed.

    An empty protobuf body is a valid, empty request.

    Raises:
        InvalidProfileError: UNSUPPORTED for a content type other than protobuf or JSON, BAD_PROTOBUF for a
            body that does not parse (the message says why).
        PayloadTooLargeError: the body exceeds `limits.max_decompressed_bytes`.
    """
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type not in PROTOBUF_CONTENT_TYPES and media_type not in JSON_CONTENT_TYPES:
        raise InvalidProfileError(
            f"content type {content_type!r} is not supported for OTLP profiles "
            "(use application/x-protobuf, application/protobuf or application/json)",
            RejectReason.UNSUPPORTED,
        )
    if len(data) > limits.max_decompressed_bytes:
        raise PayloadTooLargeError(
            f"ExportProfilesServiceRequest: size {len(data)} exceeds the limit of {limits.max_decompressed_bytes} bytes"
        )
    request = ExportProfilesServiceRequest()
    if media_type in PROTOBUF_CONTENT_TYPES:
        try:
            request.ParseFromString(data)
        except DecodeError as exc:
            raise InvalidProfileError(
                f"ExportProfilesServiceRequest: not a valid protobuf message ({exc})", RejectReason.BAD_PROTOBUF
            ) from exc
        return request
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidProfileError(
            f"ExportProfilesServiceRequest: JSON body is not valid UTF-8 ({exc})", RejectReason.BAD_PROTOBUF
        ) from exc
    # json_format accepts `[]` and similar for a message; OTLP JSON is always an object.
    if not text.lstrip().startswith("{"):
        raise InvalidProfileError(
            "ExportProfilesServiceRequest: JSON body must be an object", RejectReason.BAD_PROTOBUF
        )
    try:
        json_format.Parse(text, request, ignore_unknown_fields=False)
    except (json_format.ParseError, RecursionError) as exc:
        raise InvalidProfileError(
            f"ExportProfilesServiceRequest: not valid OTLP JSON ({exc})", RejectReason.BAD_PROTOBUF
        ) from exc
    return request


def otlp_to_pprof(request: ExportProfilesServiceRequest | ProfilesData, limits: DecodeLimits) -> list[OtlpProfile]:
    """Convert every profile of an export request (or `ProfilesData`) to pprof.

    Returns one `OtlpProfile` per pprof profile, in the order the profiles appear; an empty list when
    the request carries no profiles.

    Raises:
        InvalidProfileError: an index out of range (BAD_REFERENCE), inconsistent sample values or times
            (BAD_VALUES), a limit exceeded (TOO_MANY_ITEMS), a bad original pprof payload.
    """
    tables = _Tables(request.dictionary, limits)
    budget = _Budget(limits.max_decompressed_bytes)
    out: list[OtlpProfile] = []
    for i, resource_profiles in enumerate(request.resource_profiles):
        resource_where = f"resource_profiles[{i}]"
        resource = tables.flatten_key_values(
            resource_profiles.resource.attributes, f"{resource_where}.resource.attributes"
        )
        for j, scope_profiles in enumerate(resource_profiles.scope_profiles):
            out.extend(
                _convert_scope(
                    scope_profiles,
                    f"{resource_where}.scope_profiles[{j}]",
                    resource=resource,
                    tables=tables,
                    limits=limits,
                    budget=budget,
                )
            )
    return out


# --------------------------------------------------------------------------------------------------
# Validation helpers


def _bad_index(where: str, index: int, table: str, size: int) -> InvalidProfileError:
    return InvalidProfileError(f"{where} {index} out of range ({table} has {size} entries)", RejectReason.BAD_REFERENCE)


def _check_index(index: int, size: int, where: str, table: str) -> None:
    # Index 0 is "unset" and always allowed, even when a sender omitted the zero entry of an empty table.
    if index != 0 and not 0 < index < size:
        raise _bad_index(where, index, table, size)


def _check_indices(indices: Sequence[int], size: int, where: str, table: str) -> None:
    # min/max run in C; only walk element by element to name the culprit.
    if indices and (min(indices) < 0 or max(indices) >= max(size, 1)):
        for n, index in enumerate(indices):
            _check_index(index, size, f"{where}[{n}]", table)


def _check_size(size: int, limit: int, where: str) -> None:
    if size > limit:
        raise InvalidProfileError(f"{where}: {size} entries exceed the limit of {limit}", RejectReason.TOO_MANY_ITEMS)


def _check_int64(value: int, where: str) -> int:
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise InvalidProfileError(f"{where}: {value} does not fit in int64", RejectReason.BAD_VALUES)
    return value


class _Budget:
    """Work one request may cause beyond its own size; both bounds equal `max_decompressed_bytes`.

    Stacks are shared through the dictionary, so a small request can expand into huge pprof samples:
    location references are capped at what a pprof of the allowed size could hold (>= 1 byte per id).
    Each original payload is inflated under the same bound, so their total is capped as well.
    """

    __slots__ = ("frames_left", "limit", "payload_left")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.frames_left = limit
        self.payload_left = limit

    def take_frames(self, n: int, where: str) -> None:
        self.frames_left -= n
        if self.frames_left < 0:
            raise InvalidProfileError(
                f"{where}: expanded stacks exceed {self.limit} location references in one request",
                RejectReason.TOO_MANY_ITEMS,
            )

    def take_payload(self, n: int, where: str) -> None:
        self.payload_left -= n
        if self.payload_left < 0:
            raise PayloadTooLargeError(f"{where}: original payloads exceed {self.limit} bytes in one request")


class _Tables:
    """The request's dictionary, size-checked and fully index-validated up front."""

    __slots__ = ("attributes", "functions", "links", "locations", "mappings", "stacks", "strings")

    def __init__(self, dictionary: Any, limits: DecodeLimits) -> None:
        _check_size(len(dictionary.string_table), limits.max_strings, "dictionary.string_table")
        _check_size(len(dictionary.location_table), limits.max_locations, "dictionary.location_table")
        _check_size(len(dictionary.function_table), limits.max_functions, "dictionary.function_table")
        self.strings: list[str] = list(dictionary.string_table)
        self.functions = dictionary.function_table
        self.locations = dictionary.location_table
        self.mappings = dictionary.mapping_table
        self.stacks = dictionary.stack_table
        self.attributes = dictionary.attribute_table
        self.links = dictionary.link_table
        self._validate()

    def _validate(self) -> None:
        n_strings = len(self.strings)
        n_attributes = len(self.attributes)
        for i, fn in enumerate(self.functions):
            where = f"dictionary.function_table[{i}]"
            _check_index(fn.name_strindex, n_strings, f"{where}.name_strindex", "string_table")
            _check_index(fn.system_name_strindex, n_strings, f"{where}.system_name_strindex", "string_table")
            _check_index(fn.filename_strindex, n_strings, f"{where}.filename_strindex", "string_table")
        for i, mapping in enumerate(self.mappings):
            where = f"dictionary.mapping_table[{i}]"
            _check_index(mapping.filename_strindex, n_strings, f"{where}.filename_strindex", "string_table")
            _check_indices(mapping.attribute_indices, n_attributes, f"{where}.attribute_indices", "attribute_table")
        n_functions = len(self.functions)
        n_mappings = len(self.mappings)
        for i, loc in enumerate(self.locations):
            where = f"dictionary.location_table[{i}]"
            _check_index(loc.mapping_index, n_mappings, f"{where}.mapping_index", "mapping_table")
            for j, line in enumerate(loc.lines):
                _check_index(line.function_index, n_functions, f"{where}.lines[{j}].function_index", "function_table")
            _check_indices(loc.attribute_indices, n_attributes, f"{where}.attribute_indices", "attribute_table")
        n_locations = len(self.locations)
        for i, stack in enumerate(self.stacks):
            _check_indices(
                stack.location_indices, n_locations, f"dictionary.stack_table[{i}].location_indices", "location_table"
            )
        for i, attr in enumerate(self.attributes):
            where = f"dictionary.attribute_table[{i}]"
            _check_index(attr.key_strindex, n_strings, f"{where}.key_strindex", "string_table")
            _check_index(attr.unit_strindex, n_strings, f"{where}.unit_strindex", "string_table")
            if attr.value.WhichOneof("value") == "string_value_strindex":
                _check_index(
                    attr.value.string_value_strindex, n_strings, f"{where}.value.string_value_strindex", "string_table"
                )

    def string(self, index: int, where: str) -> str:
        """A string-table entry; index 0 is "unset" and reads as ""."""
        _check_index(index, len(self.strings), where, "string_table")
        return self.strings[index] if index else ""

    def s(self, index: int) -> str:
        """A string-table entry at an index validated with the dictionary."""
        return self.strings[index] if index else ""

    def scalar(self, value: Any, where: str) -> str | None:
        """An AnyValue as a string; None for arrays, key-value lists, bytes and empty values."""
        kind = value.WhichOneof("value")
        if kind == "string_value":
            return str(value.string_value)
        if kind == "string_value_strindex":
            return self.string(value.string_value_strindex, f"{where}.string_value_strindex")
        if kind == "bool_value":
            return "true" if value.bool_value else "false"
        if kind == "int_value":
            return str(value.int_value)
        if kind == "double_value":
            return repr(float(value.double_value))
        return None

    def flatten_key_values(self, attributes: Iterable[Any], where: str) -> dict[str, str]:
        """common.v1 KeyValues (inline or string-table keys and values) flattened to strings."""
        out: dict[str, str] = {}
        for n, kv in enumerate(attributes):
            key = kv.key or self.string(kv.key_strindex, f"{where}[{n}].key_strindex")
            text = self.scalar(kv.value, f"{where}[{n}].value")
            if key and text is not None:
                out[key] = text
        return out

    def flatten_attribute_indices(self, indices: Sequence[int], where: str, into: dict[str, str]) -> None:
        """Dictionary attributes referenced by `indices`, added to `into` where the key is not there yet."""
        _check_indices(indices, len(self.attributes), where, "attribute_table")
        for index in indices:
            if not index:
                continue
            attr = self.attributes[index]
            key = self.s(attr.key_strindex)
            text = self.scalar(attr.value, f"dictionary.attribute_table[{index}].value")
            if key and text is not None:
                into.setdefault(key, text)


# --------------------------------------------------------------------------------------------------
# Conversion


def _value_type(tables: _Tables, value_type: Any, where: str) -> tuple[str, str]:
    return (
        tables.string(value_type.type_strindex, f"{where}.type_strindex"),
        tables.string(value_type.unit_strindex, f"{where}.unit_strindex"),
    )


@dataclass(slots=True)
class _Group:
    """OTLP Profiles of one scope that become the columns of one pprof profile."""

    key: tuple[int, str, str]  # time_unix_nano, period type, period unit
    members: list[tuple[str, Any, tuple[str, str]]]  # (where, Profile, sample type)


def _convert_scope(
    scope_profiles: Any,
    where: str,
    *,
    resource: dict[str, str],
    tables: _Tables,
    limits: DecodeLimits,
    budget: _Budget,
) -> list[OtlpProfile]:
    scope = str(scope_profiles.scope.name)
    entries: list[_Group | OtlpProfile] = []
    groups: dict[tuple[int, str, str], list[_Group]] = {}
    columns_seen: dict[tuple[int, str, str, str, str], int] = {}
    seen_payloads: set[bytes] = set()
    for k, profile in enumerate(scope_profiles.profiles):
        profile_where = f"{where}.profiles[{k}]"
        if profile.original_payload and profile.original_payload_format.strip().lower() == "pprof":
            payload = bytes(profile.original_payload)
            # Converters may attach the same pprof to each single-type Profile they split it into.
            if payload in seen_payloads:
                continue
            seen_payloads.add(payload)
            raw = _payload_bytes(payload, f"{profile_where}.original_payload", limits, budget)
            entries.append(
                OtlpProfile(
                    _attributes(tables, [(profile_where, profile)], resource),
                    scope,
                    None,
                    raw,
                    f"{profile_where}.original_payload",
                    _check_int64(int(profile.time_unix_nano), f"{profile_where}.time_unix_nano"),
                )
            )
            continue
        sample_type = _value_type(tables, profile.sample_type, f"{profile_where}.sample_type")
        period_type = _value_type(tables, profile.period_type, f"{profile_where}.period_type")
        key = (int(profile.time_unix_nano), *period_type)
        # Join the first group of the same time and period that lacks this column. Groups fill in order,
        # so that is group number n for the (n+1)-th such Profile of this sample type (O(1), no scan).
        nth = columns_seen.get((*key, *sample_type), 0)
        columns_seen[(*key, *sample_type)] = nth + 1
        same_key = groups.setdefault(key, [])
        member = (profile_where, profile, sample_type)
        if nth < len(same_key):
            same_key[nth].members.append(member)
        else:
            group = _Group(key, [member])
            same_key.append(group)
            entries.append(group)

    out: list[OtlpProfile] = []
    for entry in entries:
        if isinstance(entry, OtlpProfile):
            out.append(entry)
        else:
            members = [(w, p) for w, p, _ in entry.members]
            pprof = _PprofBuilder(tables, limits, budget).build(entry)
            out.append(OtlpProfile(_attributes(tables, members, resource), scope, pprof))
    return out


def _attributes(tables: _Tables, profiles: Sequence[tuple[str, Any]], resource: dict[str, str]) -> dict[str, str]:
    """Resource attributes, plus profile-level ones for keys the resource does not set."""
    merged = dict(resource)
    for where, profile in profiles:
        tables.flatten_attribute_indices(profile.attribute_indices, f"{where}.attribute_indices", merged)
    return merged


def _payload_bytes(payload: bytes, what: str, limits: DecodeLimits, budget: _Budget) -> bytes:
    """An original pprof payload, decompressed within the request's budget (parsed by the decoder)."""
    cap = min(limits.max_decompressed_bytes, max(budget.payload_left, 0))
    try:
        raw = gunzip_bounded(payload, cap, what) if is_gzip(payload) else payload
    except PayloadTooLargeError as exc:
        if cap < limits.max_decompressed_bytes:  # the request-wide budget ran out, not this payload's
            raise PayloadTooLargeError(
                f"{what}: original payloads exceed {limits.max_decompressed_bytes} bytes in one request"
            ) from exc
        raise
    budget.take_payload(len(raw), what)
    return raw


def _looks_pre_v110(sample: Any) -> bool:
    """v1.9 put values in field 2 (read now as attribute_indices) and attribute_indices in field 3."""
    if not sample.values and not sample.timestamps_unix_nano and sample.attribute_indices:
        return True
    return len(UnknownFieldSet(sample)) > 0


class _PprofBuilder:
    """Builds one pprof profile, copying only the dictionary entries its samples reference.

    pprof ids are the dictionary indices (nonzero, since index 0 means unset and is never emitted).
    """

    __slots__ = (
        "_budget",
        "_functions",
        "_labels",
        "_limits",
        "_locations",
        "_mappings",
        "_stacks",
        "_string_ids",
        "_tables",
        "profile",
    )

    def __init__(self, tables: _Tables, limits: DecodeLimits, budget: _Budget) -> None:
        self._tables = tables
        self._limits = limits
        self._budget = budget
        self.profile = profile_pb2.Profile()
        self.profile.string_table.append("")
        self._string_ids: dict[str, int] = {"": 0}
        self._locations: set[int] = set()
        self._functions: set[int] = set()
        self._mappings: set[int] = set()
        self._stacks: dict[int, list[int]] = {}
        self._labels: dict[int, dict[str, int] | None] = {}

    def build(self, group: _Group) -> profile_pb2.Profile:
        tables = self._tables
        limits = self._limits
        n_columns = len(group.members)
        # Index 0 is valid even in an empty table, hence max(size, 1).
        stack_end = max(len(tables.stacks), 1)
        attribute_end = max(len(tables.attributes), 1)
        link_end = max(len(tables.links), 1)
        rows: dict[tuple[int, tuple[int, ...]], list[int]] = {}
        for column, (where, profile, _) in enumerate(group.members):
            _check_size(len(profile.samples), limits.max_samples, f"{where}.samples")
            for s, sample in enumerate(profile.samples):
                stack_index = sample.stack_index
                attrs = sample.attribute_indices
                values = sample.values
                # Fast path for the common shape; anything else is checked (and named) by _slow_sample.
                if (
                    0 <= stack_index < stack_end
                    and 0 <= sample.link_index < link_end
                    and values
                    and not sample.timestamps_unix_nano
                    and (not attrs or (min(attrs) >= 0 and max(attrs) < attribute_end))
                ):
                    value = int(sum(values))
                else:
                    value = _slow_sample(sample, f"{where}.samples[{s}]", tables)
                # pprof merges by element-wise sum; identity = stack + attribute set (links are dropped).
                identity = (stack_index, tuple(sorted(set(attrs))) if attrs else ())
                row = rows.get(identity)
                if row is None:
                    _check_size(len(rows) + 1, limits.max_samples, f"{where}: merged samples")
                    row = rows[identity] = [0] * n_columns
                row[column] += value

        first_where, first, _ = group.members[0]
        out = self.profile
        for _, _, (type_name, unit) in group.members:
            out.sample_type.add(type=self._string(type_name), unit=self._string(unit))
        time_nanos, period_type, period_unit = group.key
        out.time_nanos = _check_int64(time_nanos, f"{first_where}.time_unix_nano")
        out.duration_nanos = _check_int64(
            max(int(p.duration_nano) for _, p, _ in group.members), f"{first_where}.duration_nano"
        )
        if period_type or period_unit:
            out.period_type.type = self._string(period_type)
            out.period_type.unit = self._string(period_unit)
        out.period = first.period

        for (stack_index, attrs), row in rows.items():
            where = f"{first_where}: stack_table[{stack_index}]"
            if min(row) < _INT64_MIN or max(row) > _INT64_MAX:
                raise InvalidProfileError(f"{where}: summed sample values overflow int64", RejectReason.BAD_VALUES)
            location_ids = self._stack(stack_index)
            self._budget.take_frames(len(location_ids), where)
            pprof_sample = out.sample.add(location_id=location_ids, value=row)
            for attr in attrs:
                label = self._label(attr)
                if label is not None:
                    pprof_sample.label.add(**label)
        return out

    def _string(self, text: str) -> int:
        index = self._string_ids.get(text)
        if index is None:
            index = len(self._string_ids)
            _check_size(index + 1, self._limits.max_strings, "converted pprof string_table")
            self._string_ids[text] = index
            self.profile.string_table.append(text)
        return index

    def _dict_string(self, index: int) -> int:
        # Indices were validated with the dictionary; 0 stays "".
        return self._string(self._tables.s(index)) if index else 0

    def _stack(self, index: int) -> list[int]:
        ids = self._stacks.get(index)
        if ids is None:
            ids = [i for i in self._tables.stacks[index].location_indices if i] if index else []
            # Set difference keeps the per-frame cost in C; only new locations cost Python work.
            for new in sorted(set(ids).difference(self._locations)):
                self._location(new)
            self._stacks[index] = ids
        return ids

    def _location(self, index: int) -> None:
        if index not in self._locations:
            self._locations.add(index)
            loc = self._tables.locations[index]
            mapping_id = self._mapping(loc.mapping_index) if loc.mapping_index else 0
            pprof_loc = self.profile.location.add(id=index, mapping_id=mapping_id, address=loc.address)
            for line in loc.lines:
                # A line without a function names nothing; an unsymbolised location keeps its address.
                if line.function_index:
                    pprof_loc.line.add(
                        function_id=self._function(line.function_index), line=line.line, column=line.column
                    )

    def _function(self, index: int) -> int:
        if index not in self._functions:
            self._functions.add(index)
            fn = self._tables.functions[index]
            self.profile.function.add(
                id=index,
                name=self._dict_string(fn.name_strindex),
                system_name=self._dict_string(fn.system_name_strindex),
                filename=self._dict_string(fn.filename_strindex),
                start_line=fn.start_line,
            )
        return index

    def _mapping(self, index: int) -> int:
        if index not in self._mappings:
            self._mappings.add(index)
            mapping = self._tables.mappings[index]
            build_id = 0
            for attr_index in mapping.attribute_indices:
                attr = self._tables.attributes[attr_index] if attr_index else None
                if attr is None or not self._tables.s(attr.key_strindex).startswith(_BUILD_ID_PREFIX):
                    continue
                text = self._tables.scalar(attr.value, f"dictionary.attribute_table[{attr_index}].value")
                if text:
                    build_id = self._string(text)
                    break
            self.profile.mapping.add(
                id=index,
                memory_start=mapping.memory_start,
                memory_limit=mapping.memory_limit,
                file_offset=mapping.file_offset,
                filename=self._dict_string(mapping.filename_strindex),
                build_id=build_id,
            )
        return index

    def _label(self, index: int) -> dict[str, int] | None:
        """pprof Label fields for a dictionary attribute: ints -> num labels, other scalars -> str labels."""
        if index in self._labels:
            return self._labels[index]
        label: dict[str, int] | None = None
        if index:
            attr = self._tables.attributes[index]
            key = self._tables.s(attr.key_strindex)
            if key:
                if attr.value.WhichOneof("value") == "int_value":
                    label = {
                        "key": self._string(key),
                        "num": int(attr.value.int_value),
                        "num_unit": self._dict_string(attr.unit_strindex),
                    }
                else:
                    text = self._tables.scalar(attr.value, f"dictionary.attribute_table[{index}].value")
                    if text is not None:
                        label = {"key": self._string(key), "str": self._string(text)}
        self._labels[index] = label
        return label


def _slow_sample(sample: Any, where: str, tables: _Tables) -> int:
    """Validate a sample off the fast path, naming what is wrong; returns its value."""
    try:
        _check_index(sample.stack_index, len(tables.stacks), f"{where}.stack_index", "stack_table")
        _check_indices(
            sample.attribute_indices, len(tables.attributes), f"{where}.attribute_indices", "attribute_table"
        )
        _check_index(sample.link_index, len(tables.links), f"{where}.link_index", "link_table")
        return _sample_value(sample, where)
    except InvalidProfileError as exc:
        if _looks_pre_v110(sample):
            raise InvalidProfileError(f"{exc}{_PRE_V110_HINT}", exc.reason) from exc
        raise


def _sample_value(sample: Any, where: str) -> int:
    """A sample's contribution to its column: the sum of its values, or one per timestamp."""
    values = sample.values
    n_times = len(sample.timestamps_unix_nano)
    if values:
        if n_times and n_times != len(values):
            raise InvalidProfileError(
                f"{where}: {len(values)} values but {n_times} timestamps_unix_nano (must be equal)",
                RejectReason.BAD_VALUES,
            )
        return int(sum(values))
    if n_times:
        return n_times
    raise InvalidProfileError(f"{where}: has neither values nor timestamps_unix_nano", RejectReason.BAD_VALUES)
