"""Per-tenant limits counted in Redis, so they hold for the whole cluster rather than per replica.

- **Series quota** (`state.max_series_per_tenant`): one sorted set per tenant, the tenant's series
  registry, member = the series key (JSON), score = when the series' latest profile was appended to its
  stream (`score_of` its stream id: Redis' clock, so the order the uploads were answered in, whichever
  replica answered and whenever the owner applies them). Partition owners register the series they create
  (`sync`, right after applying a poll's points), raise the scores of the series they updated (once a
  second), and remove the series they drop. Registering a series that takes the tenant past its quota pops
  the tenant's least recently updated series, wherever it lives: as one process would, the tenant's own
  stalest series pays, and the tenant keeps its `quota` most recently updated series. The victims are
  returned; the owner appends an eviction record to each victim's partition stream (`eviction_fields`), and
  the victim's owner, whichever replica that is, drops the series when it reads the record, in stream order
  with its points (so a takeover replays the eviction too).
- **Upload rate** (`server.rate_limit`): one token bucket per tenant, refilled and taken in one script on
  Redis' clock, so a tenant gets its rate once for the cluster, not once per replica.

Every key of one tenant carries the hash tag `{t<digest>}` (a digest of the tenant name, since a name may
hold braces), so a script touching them works on a Redis Cluster.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from otel_leakproc.errors import RefusedError
from otel_leakproc.model import SeriesKey
from otel_leakproc.receiver.config import RateLimitConfig
from otel_leakproc.receiver.ratelimit import MAX_TENANTS
from otel_leakproc.state.records import key_from_plain, key_to_plain

log = logging.getLogger(__name__)

EVICT_FIELD = b"x"  # a stream entry with this field (instead of `r`, a point) evicts the series it names

# KEYS: the tenant's registry. ARGV: quota, number of series to remove, those, number of new series, then
# (score, series) pairs of the new series and then of the series updated since the last call. A score is
# when the series' latest profile was appended (its stream id). New series are added and the lowest scores
# beyond the quota popped (the new one itself when every other series was updated later); an updated
# series' score is raised if it is still registered. Returns {victims popped, updated series no longer
# registered (popped since)}.
_SERIES = """
local key = KEYS[1]
local quota = tonumber(ARGV[1])
local i = 2
local gone = tonumber(ARGV[i])
for j = 1, gone do redis.call('ZREM', key, ARGV[i + j]) end
i = i + gone + 1
local fresh = tonumber(ARGV[i])
local victims = {}
local missing = {}
local j = i + 1
while j < #ARGV do
  local score, member = ARGV[j], ARGV[j + 1]
  local old = redis.call('ZSCORE', key, member)
  if old then
    if tonumber(old) < tonumber(score) then redis.call('ZADD', key, score, member) end
  elseif j < i + 1 + 2 * fresh then
    redis.call('ZADD', key, score, member)
    local over = redis.call('ZCARD', key) - quota
    if over > 0 then
      local popped = redis.call('ZPOPMIN', key, over)
      for k = 1, #popped, 2 do victims[#victims + 1] = popped[k] end
    end
  else
    missing[#missing + 1] = member
  end
  j = j + 2
end
return {victims, missing}
"""

# KEYS: the tenant's bucket. ARGV: rate per second, burst, cost. Returns 0 when admitted, else the
# milliseconds until the bucket holds `cost` tokens.
_BUCKET = """
local rate, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local saved = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(saved[1]) or burst
local at = tonumber(saved[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 1000)
if cost > burst then cost = burst end
local wait = 0
if tokens < cost then
  wait = math.ceil((cost - tokens) * 1000 / rate)
else
  tokens = tokens - cost
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return wait
"""


def tenant_tag(prefix: str, tenant: str) -> str:
    """`<prefix>:{t<16 hex digits>}`: the hash tag of one tenant's keys."""
    digest = hashlib.blake2b(tenant.encode("utf-8"), digest_size=8).hexdigest()
    return f"{prefix}:{{t{digest}}}"


def registry_key(prefix: str, tenant: str) -> str:
    """Sorted set: the tenant's series -> when its latest profile was appended (`score_of`)."""
    return f"{tenant_tag(prefix, tenant)}:series"


def bucket_key(prefix: str, tenant: str) -> str:
    """Hash: the tenant's upload token bucket (`tokens`, `at` in ms); expires once it would be full."""
    return f"{tenant_tag(prefix, tenant)}:bucket"


def score_of(stream_id: bytes) -> int:
    """A stream id `<ms>-<seq>` as a registry score: ms x 1000 + seq (exact below 2^53; the sequence is
    capped at 999, beyond which entries of one millisecond tie)."""
    ms, _, seq = stream_id.partition(b"-")
    return int(ms) * 1000 + min(int(seq or 0), 999)


def member(key: SeriesKey) -> str:
    """A series as a registry member (and an eviction record's value): its key as JSON."""
    return json.dumps(key_to_plain(key), separators=(",", ":"), ensure_ascii=False)


def from_member(value: bytes | str) -> SeriesKey:
    """The series a registry member or eviction record names. Raises CodecError or ValueError."""
    text = value.decode("utf-8") if isinstance(value, bytes) else value
    return key_from_plain(json.loads(text))


def eviction_fields(key: SeriesKey) -> dict[bytes, bytes]:
    """The stream entry that tells a partition's owner to drop one series (its tenant's quota)."""
    return {EVICT_FIELD: member(key).encode("utf-8")}


@dataclass(slots=True)
class TenantChanges:
    """What an owner did to one tenant's series since its last `sync`."""

    gone: set[SeriesKey]
    fresh: dict[SeriesKey, int]  # new series -> score (`score_of` its latest point)
    touched: dict[SeriesKey, int]  # updated series -> score


@dataclass(frozen=True, slots=True)
class SyncResult:
    """Series to evict: popped by the quota (`victims`), or updated but popped earlier (`missing`: the
    eviction record that should have reached their owner may have been lost with the replica that popped
    them; evicting them again is harmless)."""

    victims: list[SeriesKey]
    missing: list[SeriesKey]
    calls: int  # script calls made (one per tenant)


SYNC_CHUNK = 1000  # series per registry script call


class SeriesQuota:
    """The cluster-wide series registries (see the module docstring). Blocking: call from a thread."""

    def __init__(self, client: Any, prefix: str, quota: int, *, cluster: bool) -> None:
        self._client = client
        self._prefix = prefix
        self._quota = quota
        self._cluster = cluster
        self._script = client.register_script(_SERIES)

    def sync(self, changes: dict[str, TenantChanges]) -> SyncResult:
        """Apply each tenant's changes in one script call per `SYNC_CHUNK` series (pipelined, except on a
        Redis Cluster where redis-py cannot pipeline scripts), so no call keeps Redis busy for long. Raises
        redis errors (nothing to undo: every step is idempotent)."""
        calls = []
        for tenant, change in changes.items():
            key = registry_key(self._prefix, tenant)
            gone = sorted(map(member, change.gone))
            fresh = sorted(change.fresh.items(), key=lambda item: item[1])
            touched = [(k, score) for k, score in change.touched.items() if k not in change.fresh]
            # In order: removals, then new series (oldest first), then updates; each call takes a slice.
            while gone or fresh or touched:
                part_gone, gone = gone[:SYNC_CHUNK], gone[SYNC_CHUNK:]
                room = SYNC_CHUNK - len(part_gone)
                part_fresh, fresh = fresh[:room], fresh[room:]
                room -= len(part_fresh)
                part_touched, touched = touched[:room], touched[room:]
                args: list[Any] = [self._quota, len(part_gone), *part_gone, len(part_fresh)]
                for k, score in (*part_fresh, *part_touched):
                    args += [score, member(k)]
                calls.append((key, args))
        if not calls:
            return SyncResult([], [], 0)
        if self._cluster or len(calls) == 1:
            replies = [self._script(keys=[key], args=args) for key, args in calls]
        else:
            pipe = self._client.pipeline(transaction=False)
            for key, args in calls:
                self._script(keys=[key], args=args, client=pipe)
            replies = pipe.execute()
        victims: list[SeriesKey] = []
        missing: list[SeriesKey] = []
        for popped, gone in replies:
            victims += _keys(popped)
            missing += _keys(gone)
        return SyncResult(victims, missing, len(calls))

    def count(self, tenant: str) -> int:
        """The series the tenant holds in the whole cluster."""
        return int(self._client.zcard(registry_key(self._prefix, tenant)))


def _keys(members: Iterable[bytes]) -> list[SeriesKey]:
    out = []
    for value in members:
        try:
            out.append(from_member(value))
        except ValueError as exc:  # CodecError is a ValueError; not written by this code
            log.warning("cluster: a tenant registry member cannot be read and is skipped: %s", exc)
    return out


class SharedRateLimiter:
    """`server.rate_limit` counted in Redis: one token bucket per tenant for the whole cluster (the same
    interface as `receiver.ratelimit.RateLimiter`). One script call per upload, on the event loop (like the
    append). A refused tenant is refused here without asking Redis until its bucket can hold a token again
    (no replica adds tokens, so the answer cannot change sooner): a flood of refused uploads costs Redis
    one call per replica per refill, not one per upload. When Redis cannot answer, the upload is let
    through: the append that follows fails and refuses it with 503, and a rate limit must not turn a Redis
    hiccup into 429s."""

    def __init__(
        self, client: Any, prefix: str, config: RateLimitConfig, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._prefix = prefix
        self._rate = config.uploads_per_second
        self._burst = config.burst
        self._script = client.register_script(_BUCKET) if self._rate > 0 else None
        self._clock = clock
        self._refused: OrderedDict[str, float] = OrderedDict()  # tenant -> refused until (clock)
        self.calls = 0  # script calls made

    @property
    def enabled(self) -> bool:
        return self._script is not None

    def admit(self, tenant: str, cost: float = 1.0) -> None:
        """Raises RefusedError (with `retry_after`) when the tenant's cluster-wide bucket is short."""
        if self._script is None:
            return
        now = self._clock()
        until = self._refused.get(tenant)
        if until is not None:
            if now < until:
                raise self._refusal(tenant, until - now)
            del self._refused[tenant]
        self.calls += 1
        try:
            wait_ms = int(self._script(keys=[bucket_key(self._prefix, tenant)], args=[self._rate, self._burst, cost]))
        except Exception as exc:  # redis-py raises RedisError and OSError subclasses
            log.warning("cluster: the rate limit of tenant %r cannot be checked (%s); admitted", tenant, exc)
            return
        if wait_ms > 0:
            self._refused[tenant] = now + wait_ms / 1000
            while len(self._refused) > MAX_TENANTS:
                self._refused.popitem(last=False)
            raise self._refusal(tenant, wait_ms / 1000)

    def _refusal(self, tenant: str, wait: float) -> RefusedError:
        return RefusedError(
            f"tenant {tenant!r} is over its rate limit of {self._rate:g} uploads/s (counted for the whole cluster)",
            retry_after=wait,
        )
