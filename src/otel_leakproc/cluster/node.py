"""One replica of a Redis-backed cluster (`state.backend: redis`; the design is in docs/scaling.md).

- `accept` (the ingest sink, on the event loop): any replica takes any upload. The point records of the
  upload are appended (a script of XADDs per partition, atomic; one round trip) to the streams of their
  partitions before the upload is answered; if Redis cannot take them the upload is refused (503,
  Retry-After) and the store's health says why until a probe succeeds.
- Leases (`_lease_tick`, every third of the lease TTL): each live replica wants the partitions it wins by
  rendezvous hashing over the live members (so each holds about P/N and a membership change moves about
  1/N), acquires them with `SET NX PX` (the script also increments the partition's fencing epoch), renews
  them, and hands those it no longer wins back (checkpoint, then release). A partition whose lease cannot be
  renewed, or whose local validity ran out, is dropped at once: no more processing, no more exports.
- Owners (`_poll_tick`): read their partitions' streams after the cursor, apply the points to the
  partition's own series table, export (only an owner exports a series), and checkpoint the changed series
  (`_checkpoint_tick`) with a script that refuses a stale epoch, stores the cursor with the checkpoints and
  trims the stream up to it. A takeover loads the checkpoints and replays the stream after the cursor: the
  series resume exactly where the last checkpoint plus the stream leave them.
- Events: the owner records the time of the last event it exported per series (fenced); an event replayed
  after a handoff at or before that time was sent already and is not sent again (`event.id` is a hash of
  the series, the event name and the profile time, so it is the same on every replica).
- Every replica's series API reads the series objects owners publish to Redis every second.
- Tenant series quotas hold for the cluster (`cluster/quotas.py`): owners register the series they create
  in the tenant's registry right after a poll; a series over the quota pops the tenant's least recently
  updated one, which its owner drops when it reads the eviction record appended to its stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from otel_leakproc.cluster.connection import redacted, replica_id
from otel_leakproc.cluster.partitions import PartitionKeys, count_key, members_key, partition_of
from otel_leakproc.cluster.quotas import (
    EVICT_FIELD,
    SeriesQuota,
    SharedRateLimiter,
    SyncResult,
    TenantChanges,
    eviction_fields,
    from_member,
    score_of,
)
from otel_leakproc.config import Settings
from otel_leakproc.model import LeakEvent, SeriesKey
from otel_leakproc.processor.detector import SeriesDetector
from otel_leakproc.processor.pipeline import Pipeline
from otel_leakproc.processor.state import SeriesTable, TrackedSeries
from otel_leakproc.query.series import Selection, order
from otel_leakproc.receiver.uploads import UploadRequest, UploadResult
from otel_leakproc.state.codec import CodecError, read_frames
from otel_leakproc.state.health import StoreHealth, StoreUnavailableError
from otel_leakproc.state.records import (
    PointRecord,
    checkpoint_frame,
    checkpoint_head,
    checkpoint_state,
    point_frame,
    point_from_payload,
    series_id,
)
from otel_leakproc.state.store import MemoryStore

log = logging.getLogger(__name__)

POLL_BATCH = 512  # stream entries read per partition per poll
IDLE_BLOCK_MS = 1000  # longest wait of one blocking read of the owned streams
CURSOR = b"cursor"
RETRY_AFTER = 2.0

# KEYS: stream. ARGV: point frames. One upload's points of one partition, all or none.
_APPEND = """
for i = 1, #ARGV do redis.call('XADD', KEYS[1], '*', 'r', ARGV[i]) end
return #ARGV
"""
# KEYS: lease, epoch. ARGV: replica, ttl ms. Returns the new epoch, or 0 when another replica holds it.
_ACQUIRE = """
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return tonumber(redis.call('GET', KEYS[2]) or '0')
end
if cur then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return redis.call('INCR', KEYS[2])
"""
# KEYS: lease, epoch. ARGV: replica, ttl ms, epoch. 1 when renewed, 0 when the lease is lost.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('GET', KEYS[2]) == ARGV[3] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
# KEYS: lease, epoch. ARGV: replica, epoch.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('GET', KEYS[2]) == ARGV[2] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""
# KEYS: epoch, hash, stream. ARGV: epoch, trim min id ('' for none), then field/value pairs.
# The fenced write of an owner: refused (0) when another replica took the partition since. Lua unpacks
# fewer than 8000 values at once, so the pairs go in chunks of 1000 values (500 series).
_FENCED_HSET = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
for i = 3, #ARGV, 1000 do redis.call('HSET', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV))) end
if ARGV[2] ~= '' then redis.call('XTRIM', KEYS[3], 'MINID', ARGV[2]) end
return 1
"""

# KEYS: epoch, hash. ARGV: epoch, then fields to delete (an evicted series' published object).
_FENCED_UNSET = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
for i = 2, #ARGV, 1000 do redis.call('HDEL', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV))) end
return 1
"""

# KEYS: epoch, checkpoints, reports, sent. ARGV: epoch, then series ids: an evicted series leaves Redis too.
_FENCED_HDEL = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
for i = 2, #ARGV do
  redis.call('HDEL', KEYS[2], ARGV[i])
  redis.call('HDEL', KEYS[3], ARGV[i])
  redis.call('HDEL', KEYS[4], ARGV[i])
end
return 1
"""


def _next_id(stream_id: bytes) -> str:
    ms, _, seq = stream_id.decode().partition("-")
    return f"{ms}-{int(seq) + 1}"


def _rendezvous(partition: int, member: str) -> bytes:
    return hashlib.blake2b(f"{partition}\x1f{member}".encode(), digest_size=8).digest()


@dataclass(slots=True)
class Owned:
    """A partition this replica owns, with its own series table."""

    keys: PartitionKeys
    epoch: int
    table: SeriesTable
    valid_until: float  # monotonic: past it the lease may have expired, so stop
    cursor: bytes = b"0-0"  # the last stream id applied
    checkpointed: bytes = b"0-0"  # the last stream id the stored checkpoints cover
    dirty: set[SeriesKey] = field(default_factory=set)  # changed since the last checkpoint
    changed: set[SeriesKey] = field(default_factory=set)  # changed since the last published report
    evicted: set[SeriesKey] = field(default_factory=set)  # to delete from Redis at the next checkpoint
    sent: dict[str, int] = field(default_factory=dict)  # series id -> time of its last exported event
    retracted: set[SeriesKey] = field(default_factory=set)  # evicted: to unpublish at the next publish
    # created / updated since the last registry sync -> score of the latest point (quotas.score_of)
    fresh: dict[SeriesKey, int] = field(default_factory=dict)
    touched: dict[SeriesKey, int] = field(default_factory=dict)
    gone: set[SeriesKey] = field(default_factory=set)  # evicted: to remove from the tenant's registry
    busy: bool = False  # a poll or checkpoint of it is in a worker thread


class ClusterStore(MemoryStore):
    """The `SeriesStore` the service sees with `backend: redis`: nothing is journaled locally (the stream
    is the journal), the health is the Redis connection's, and `probe` recovers it."""

    def __init__(self, client: Any, url: str) -> None:
        super().__init__()
        self.client = client
        self.url = redacted(url)

    def probe(self) -> None:
        if self.health.ok:
            return
        try:
            self.client.ping()
        except Exception as exc:  # redis-py raises RedisError and OSError subclasses
            self.health.fail(f"redis {self.url}: {exc}")
            return
        self.health.recover()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()

    def describe(self) -> str:
        return f"redis {self.url} (shared by the replicas)"


class ClusterNode:
    """See the module docstring. `start()` after the pipeline exists, `stop()` before the store closes."""

    def __init__(
        self,
        settings: Settings,
        store: ClusterStore,
        pipeline: Pipeline,
        series_object: Callable[[TrackedSeries], dict[str, Any]],
    ) -> None:
        self.settings = settings
        self.config = settings.state.redis
        self.store = store
        self.client = store.client
        self.pipeline = pipeline
        self.series_object = series_object
        self.replica = replica_id(self.config)
        self.prefix = self.config.key_prefix
        self.ttl_ms = int(self.config.lease_ttl_seconds * 1000)
        self.partitions: int | None = None
        self.owned: dict[int, Owned] = {}
        self.seen_free: set[int] = set()
        self.full: dict[int, int] = {}  # partition -> stream length, for those past max_stream_entries
        self.handovers = 0
        self.on_change: Callable[[], None] | None = None  # ownership changed (the scrape receiver re-targets)
        self.takeovers = 0
        self.lost = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._append = self.client.register_script(_APPEND)
        self._acquire = self.client.register_script(_ACQUIRE)
        self._renew = self.client.register_script(_RENEW)
        self._release = self.client.register_script(_RELEASE)
        self._fenced = self.client.register_script(_FENCED_HSET)
        self._fenced_delete = self.client.register_script(_FENCED_HDEL)
        self._fenced_unset = self.client.register_script(_FENCED_UNSET)
        self.quota = SeriesQuota(
            self.client, self.prefix, settings.state.max_series_per_tenant, cluster=self.config.cluster
        )
        self._quota_lock = asyncio.Lock()
        self.quota_victims = 0  # series this replica's registrations popped (evicted by their owners)
        pipeline.telemetry.registry.register(_ClusterMetrics(self))
        pipeline.gauges.source = _OwnedSeries(self)  # series_tracked/flagged count this replica's partitions

    def rate_limiter(self) -> SharedRateLimiter:
        """`server.rate_limit` counted in Redis (one bucket per tenant for the cluster)."""
        return SharedRateLimiter(self.client, self.prefix, self.settings.server.rate_limit)

    @property
    def health(self) -> StoreHealth:
        return self.store.health

    # -- accepting uploads -----------------------------------------------------------------------------

    def accept(self, tenant: str, request: UploadRequest, result: UploadResult) -> None:
        """The ingest sink: append the upload's points to their partitions' streams (all in one round trip)
        before the upload is answered. Raises StoreUnavailableError (nothing was acknowledged)."""
        if not result.profiles:
            return
        self.health.check()
        partitions = self.partitions
        if partitions is None:
            raise StoreUnavailableError("the cluster's partition count is not known yet (redis unreachable)", 2.0)
        if self.full:
            for p in result.profiles:
                n = partition_of(tenant, p.service, p.instance, partitions)
                if n in self.full:
                    raise StoreUnavailableError(
                        f"partition {n} has {self.full[n]} unprocessed profiles (state.redis.max_stream_entries "
                        f"{self.config.max_stream_entries}): no replica is keeping up with it; retry",
                        RETRY_AFTER,
                    )
        frames: dict[int, list[bytes]] = {}
        for p in result.profiles:
            key = SeriesKey(tenant, p.service, p.instance, p.summary.kind)
            n = partition_of(tenant, p.service, p.instance, partitions)
            frames.setdefault(n, []).append(point_frame(0, key, p.resource, p.summary))
        try:
            if len(frames) == 1 or self.config.cluster:
                # The usual upload is one process's profiles: one script call, all or none. (redis-py cannot
                # pipeline scripts on a Redis Cluster: there, a batch of several processes takes one round
                # trip per partition.)
                for n, items in frames.items():
                    self._append(keys=[PartitionKeys(self.prefix, n).stream], args=items)
            else:  # a batch of several processes (an OTLP export): all or none per partition
                pipe = self.client.pipeline(transaction=False)
                for n, items in frames.items():
                    self._append(keys=[PartitionKeys(self.prefix, n).stream], args=items, client=pipe)
                pipe.execute()
        except Exception as exc:
            self.health.fail(f"redis {self.store.url}: {exc}")
            raise StoreUnavailableError(
                f"state store unavailable: redis {self.store.url}: {exc}; the profile was not stored, retry",
                RETRY_AFTER,
            ) from exc

    # -- lifecycle -------------------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await asyncio.to_thread(self._init_partitions)
        except Exception as exc:
            self.health.fail(f"redis {self.store.url}: {exc}")
        self._tasks = [
            asyncio.create_task(self._loop(self._lease_tick, self.config.lease_ttl_seconds / 3), name="leases"),
            asyncio.create_task(self._loop(self._poll_tick, self.config.poll_interval_ms / 1000), name="poll"),
            asyncio.create_task(
                self._loop(self._checkpoint_tick, self.settings.state.snapshot_interval_seconds), name="checkpoint"
            ),
            asyncio.create_task(self._loop(self._publish_tick, 1.0), name="publish"),
        ]
        log.info("cluster: replica %s on %s", self.replica, self.store.describe())

    async def stop(self) -> None:
        """Hand every partition over at once: checkpoint it, publish its series, release its lease."""
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # Leave the membership first, so the others compute their new share without this replica and take
        # each released partition at their next round.
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self.client.zrem, members_key(self.prefix), self.replica)
        for n in list(self.owned):
            await self._hand_over(n)

    async def _loop(self, tick: Callable[[], Any], period: float) -> None:
        while True:
            started = time.monotonic()
            try:
                await tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if _is_redis_error(exc):
                    self.health.fail(f"redis {self.store.url}: {exc}")
                else:
                    log.exception("cluster: %s failed", getattr(tick, "__name__", tick))
            await asyncio.sleep(max(0.0, period - (time.monotonic() - started)))

    def _init_partitions(self) -> None:
        key = count_key(self.prefix)
        self.client.set(key, self.config.partitions, nx=True)
        stored = int(self.client.get(key))
        if stored != self.config.partitions:
            log.warning(
                "cluster: the cluster has %d partitions (fixed when it was created); state.redis.partitions=%d "
                "is ignored",
                stored,
                self.config.partitions,
            )
        self.partitions = stored

    # -- leases ----------------------------------------------------------------------------------------

    async def _lease_tick(self) -> None:
        if self.partitions is None:
            await asyncio.to_thread(self._init_partitions)
        assert self.partitions is not None
        before = set(self.owned)
        sent_at = time.monotonic()
        held = [(n, o.keys, o.epoch) for n, o in self.owned.items()]
        members, holders, renewed = await asyncio.to_thread(self._lease_round, held)
        self.store.probe()
        for n, ok in renewed.items():
            owned = self.owned.get(n)
            if owned is None:
                continue
            if ok:
                owned.valid_until = sent_at + self.config.lease_ttl_seconds * 0.8
            else:
                self._drop(n, "its lease was lost")
        for n in list(self.owned):
            if time.monotonic() > self.owned[n].valid_until:
                self._drop(n, "its lease could not be renewed in time")
        wanted = {n for n in range(self.partitions) if self._winner(n, members) == self.replica}
        for n in list(self.owned):
            if n not in wanted:  # a newer or luckier member wins it: hand it over now
                await self._hand_over(n)
        free = {n for n in range(self.partitions) if holders.get(n) is None}
        for n in sorted(free):
            if n in self.owned:
                continue
            # Our own partitions at once; a free partition someone else should own only if it stayed free for
            # a whole round (its winner may be dead before its membership ran out).
            if n in wanted or n in self.seen_free:
                await self._take_over(n)
        self.seen_free = free - set(self.owned)
        if self.on_change is not None and set(self.owned) != before:
            self.on_change()

    def owns(self, tenant: str, service: str, instance: str) -> bool:
        """Whether this replica owns the partition of a process's series now."""
        partitions = self.partitions
        return partitions is not None and partition_of(tenant, service, instance, partitions) in self.owned

    def _lease_round(
        self, held: list[tuple[int, PartitionKeys, int]]
    ) -> tuple[list[str], dict[int, bytes | None], dict[int, bool]]:
        """Renew membership and the leases `held`; read every lease holder. In a worker thread."""
        assert self.partitions is not None
        now_ms = int(time.time() * 1000)
        members = members_key(self.prefix)
        pipe = self.client.pipeline(transaction=False)
        pipe.zadd(members, {self.replica: now_ms + self.ttl_ms})
        pipe.zremrangebyscore(members, "-inf", now_ms)
        pipe.zrange(members, 0, -1)
        live = [m.decode() for m in pipe.execute()[2]]
        renewed = {}
        for n, keys, epoch in held:
            renewed[n] = bool(self._renew(keys=[keys.lease, keys.epoch], args=[self.replica, self.ttl_ms, epoch]))
        pipe = self.client.pipeline(transaction=False)
        for n in range(self.partitions):
            pipe.get(PartitionKeys(self.prefix, n).lease)
        for n in range(self.partitions):
            pipe.xlen(PartitionKeys(self.prefix, n).stream)
        replies = pipe.execute()
        holders = dict(enumerate(replies[: self.partitions]))
        limit = self.config.max_stream_entries
        self.full = {n: length for n, length in enumerate(replies[self.partitions :]) if length > limit}
        return live, holders, renewed

    def _winner(self, n: int, members: list[str]) -> str | None:
        if self.replica not in members:
            members = [*members, self.replica]
        return max(members, key=lambda m: _rendezvous(n, m))

    async def _take_over(self, n: int) -> None:
        keys = PartitionKeys(self.prefix, n)
        sent_at = time.monotonic()
        epoch = int(
            await asyncio.to_thread(self._acquire, keys=[keys.lease, keys.epoch], args=[self.replica, self.ttl_ms])
        )
        if not epoch:
            return
        owned = Owned(
            keys,
            epoch,
            # No per-tenant bound in the partition's table: the tenant's registry is its quota (cluster-wide).
            SeriesTable(self.settings.processor, self.settings.state.max_series),
            sent_at + self.config.lease_ttl_seconds * 0.8,
        )
        try:
            restored = await asyncio.to_thread(self._load, owned)
        except Exception:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._release, keys=[keys.lease, keys.epoch], args=[self.replica, epoch])
            raise
        self.owned[n] = owned
        self.takeovers += 1
        for tracked in owned.table:
            self.pipeline.report(tracked)
        log.info(
            "cluster: took partition %d (epoch %d): %d series from checkpoints, replaying the stream after %s",
            n,
            epoch,
            restored,
            owned.cursor.decode(),
        )

    def _load(self, owned: Owned) -> int:
        """Read a partition's checkpoints (and the event times already sent) into its table."""
        keys = owned.keys
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(keys.checkpoints)
        pipe.hgetall(keys.sent)
        saved, sent = pipe.execute()
        owned.cursor = owned.checkpointed = saved.pop(CURSOR, b"0-0")
        owned.sent = {k.decode(): int(v) for k, v in sent.items()}
        series = []
        for sid, data in saved.items():
            try:
                payload = _one_frame(data, "checkpoint")
                head = checkpoint_head(payload)
                detector = SeriesDetector.from_state(head.key, self.settings.processor, checkpoint_state(payload))
            except (CodecError, ValueError) as exc:
                log.error("cluster: the checkpoint of %r cannot be read (%s); the series starts over", sid, exc)
                continue
            series.append(TrackedSeries(head.key, detector, dict(head.resource), detector.report()))
        return owned.table.adopt(series)

    async def _hand_over(self, n: int) -> None:
        """Give a partition up cleanly (a rebalance or SIGTERM): checkpoint, publish, release, forget."""
        owned = self.owned.get(n)
        if owned is None:
            return
        with contextlib.suppress(Exception):
            await self._checkpoint(owned)
            await self._publish(owned)
        self._drop(n, "handed over")
        keys = owned.keys
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._release, keys=[keys.lease, keys.epoch], args=[self.replica, owned.epoch])
        self.handovers += 1

    def _drop(self, n: int, why: str) -> None:
        """Stop processing and exporting a partition at once."""
        owned = self.owned.pop(n, None)
        if owned is None:
            return
        if why != "handed over":
            self.lost += 1
        for tracked in owned.table:
            self.pipeline.forget(tracked.key)
        log.info("cluster: partition %d (epoch %d) dropped: %s", n, owned.epoch, why)
        # Stop scraping its targets now, before the lease is released and another replica starts on them.
        if self.on_change is not None:
            self.on_change()

    def _still_owned(self, n: int, owned: Owned) -> bool:
        return self.owned.get(n) is owned and time.monotonic() <= owned.valid_until

    # -- owning: reading the streams ---------------------------------------------------------------------

    async def _poll_tick(self) -> None:
        if not self.owned:
            return
        batch = [(n, o, o.cursor) for n, o in self.owned.items() if not o.busy]
        if not batch:
            return
        for _, owned, _ in batch:
            owned.busy = True
        try:
            streams = [(o.keys.stream, c) for _, o, c in batch]
            if self.config.cluster:  # one XREAD cannot span the slots of a Redis Cluster
                read = await asyncio.to_thread(self._read, streams)
            else:
                read = await asyncio.to_thread(self._read_blocking, streams, self._block_ms())
        finally:
            for _, owned, _ in batch:
                owned.busy = False
        more = False
        for (n, owned, cursor), entries in zip(batch, read, strict=True):
            if not entries or not self._still_owned(n, owned) or owned.cursor != cursor:
                continue
            self._apply(owned, entries)
            more = more or len(entries) == POLL_BATCH
        if any(o.fresh or o.gone for o in self.owned.values()):
            await self._sync_quota(touch=False)  # new series are held to their tenant's quota at once
        if more:
            await self._poll_tick()

    def _read(self, streams: list[tuple[str, bytes]]) -> list[list[tuple[bytes, Entry]]]:
        pipe = self.client.pipeline(transaction=False)
        for stream, cursor in streams:
            pipe.xrange(stream, min=b"(" + cursor, count=POLL_BATCH)
        out = []
        for entries in pipe.execute():
            decoded: list[tuple[bytes, Entry]] = []
            for entry_id, fields in entries:
                decoded.append((entry_id, _decode_entry(fields)))
            out.append(decoded)
        return out

    def _block_ms(self) -> int:
        """How long one idle XREAD waits: a second, well within the command timeout (the connection's
        socket timeout must not fire while Redis is only waiting for entries)."""
        return max(1, min(IDLE_BLOCK_MS, int(self.config.timeout_seconds * 1000 / 2)))

    def _read_blocking(self, streams: list[tuple[str, bytes]], block_ms: int) -> list[list[tuple[bytes, Entry]]]:
        """Every owned stream in one XREAD that waits up to `block_ms` for an entry in any of them: an idle
        owner costs Redis one command per `block_ms`, not one read per partition per poll interval, and a
        new entry is read as soon as it is appended."""
        reply = self.client.xread(dict(streams), count=POLL_BATCH, block=block_ms) or []
        found: dict[bytes, list[tuple[bytes, Entry]]] = {}
        for name, entries in reply:
            found[name if isinstance(name, bytes) else str(name).encode()] = [
                (entry_id, _decode_entry(fields)) for entry_id, fields in entries
            ]
        return [found.get(stream.encode(), []) for stream, _ in streams]

    def _apply(self, owned: Owned, entries: list[tuple[bytes, Entry]]) -> None:
        for entry_id, point in entries:
            owned.cursor = entry_id
            if point is None:
                continue
            if isinstance(point, SeriesKey):  # an eviction record: the tenant's quota chose this series
                if owned.table.discard(point):
                    self._evicted(owned, point)
                continue
            if owned.table.get(point.key) is None or point.key in owned.fresh:
                owned.fresh[point.key] = score_of(entry_id)
            else:
                owned.touched[point.key] = score_of(entry_id)
            update = owned.table.update(point.key, point.resource, point.summary)
            owned.dirty.add(point.key)
            owned.changed.add(point.key)
            for evicted in update.evicted:
                self._evicted(owned, evicted)
            self.pipeline.report(update.series)
            if update.event is not None:
                self._event(owned, update.event)

    def _evicted(self, owned: Owned, key: SeriesKey) -> None:
        """A series left the partition's table: stop exporting it, delete it from Redis (unpublished at
        the next publish, its checkpoint at the next checkpoint, its registry entry at the next sync)."""
        self.pipeline.forget(key)
        owned.dirty.discard(key)
        owned.changed.discard(key)
        owned.touched.pop(key, None)
        owned.evicted.add(key)
        owned.retracted.add(key)
        owned.gone.add(key)
        telemetry = self.pipeline.telemetry
        telemetry.series_evicted.inc()
        telemetry.tenant_series_evicted.labels(telemetry.tenant_label(key.tenant)).inc()

    # -- tenant quotas -------------------------------------------------------------------------------------

    async def _sync_quota(self, touch: bool) -> None:
        """Bring the tenants' registries up to date with the owned tables: remove the series that left,
        register the new ones (popping the least recently updated beyond each tenant's quota), and when
        `touch`, refresh the scores of those updated; then send each popped series' owner an eviction."""
        async with self._quota_lock:
            taken: list[tuple[Owned, dict[SeriesKey, int], set[SeriesKey], dict[SeriesKey, int]]] = []
            changes: dict[str, TenantChanges] = {}
            for n, owned in list(self.owned.items()):
                if not self._still_owned(n, owned):
                    continue
                fresh, gone = owned.fresh, owned.gone
                touched: dict[SeriesKey, int] = owned.touched if touch else {}
                if not (fresh or gone or touched):
                    continue
                owned.fresh, owned.gone = {}, set()
                if touch:
                    owned.touched = {}
                taken.append((owned, fresh, gone, touched))
                # The table decides a series evicted and then seen again (or the reverse) since the last sync.
                table = owned.table
                for key in {*fresh, *gone, *touched}:
                    change = changes.setdefault(key.tenant, TenantChanges(set(), {}, {}))
                    if table.get(key) is None:
                        change.gone.add(key)
                    elif key in fresh:
                        change.fresh[key] = max(fresh[key], touched.get(key, 0))
                    elif key in touched:
                        change.touched[key] = touched[key]
            if not changes:
                return
            try:
                result = await asyncio.to_thread(self._quota_round, changes)
            except Exception:
                for owned, fresh, gone, touched in taken:  # newer scores taken since win
                    owned.fresh = {**fresh, **owned.fresh}
                    owned.gone |= gone
                    owned.touched = {**touched, **owned.touched}
                raise
            self.quota_victims += len(result.victims)

    def _quota_round(self, changes: dict[str, TenantChanges]) -> SyncResult:
        result = self.quota.sync(changes)
        partitions = self.partitions
        evict = result.victims + result.missing
        if evict and partitions is not None:
            pipe = self.client.pipeline(transaction=False)
            for key in evict:
                n = partition_of(key.tenant, key.service, key.instance, partitions)
                pipe.xadd(PartitionKeys(self.prefix, n).stream, eviction_fields(key))
            pipe.execute()
        return result

    def _event(self, owned: Owned, event: LeakEvent) -> None:
        sid = series_id(event.report.key)
        if event.time_nanos <= owned.sent.get(sid, -1):
            return  # exported by the previous owner before the handoff
        self.pipeline.event(event)
        owned.sent[sid] = event.time_nanos
        keys = owned.keys
        try:
            self._fenced(keys=[keys.epoch, keys.sent, keys.stream], args=[owned.epoch, "", sid, event.time_nanos])
        except Exception as exc:  # the event went out; a new owner may send it again (at least once)
            log.warning("cluster: cannot record the event sent for %s: %s", sid, exc)

    # -- owning: checkpoints and published series -------------------------------------------------------

    async def _checkpoint_tick(self) -> None:
        for n, owned in list(self.owned.items()):
            if owned.dirty and self._still_owned(n, owned):
                await self._checkpoint(owned)

    async def _checkpoint(self, owned: Owned) -> None:
        """Write the changed series' checkpoints and the cursor they cover, fenced by the epoch, and trim the
        stream up to the cursor. The new series are registered with their tenants first (a checkpointed
        series is always counted in its tenant's quota)."""
        if owned.fresh or owned.gone:
            await self._sync_quota(touch=False)
        cursor = owned.cursor
        dirty, owned.dirty = owned.dirty, set()
        evicted, owned.evicted = owned.evicted, set()
        states = []
        for key in dirty:
            tracked = owned.table.get(key)
            if tracked is not None:
                states.append((key, dict(tracked.resource), tracked.detector.to_state()))
        keys = owned.keys

        def write() -> int:
            if evicted:
                gone = [series_id(k) for k in evicted]
                keys4 = [keys.epoch, keys.checkpoints, keys.reports, keys.sent]
                if not self._fenced_delete(keys=keys4, args=[owned.epoch, *gone]):
                    return 0
            args: list[Any] = [owned.epoch, _next_id(cursor) if cursor != b"0-0" else ""]
            for key, resource, state in states:
                args += [series_id(key), checkpoint_frame(0, key, resource, state)]
            args += [CURSOR, cursor]
            return int(self._fenced(keys=[keys.epoch, keys.checkpoints, keys.stream], args=args))

        try:
            ok = await asyncio.to_thread(write)
        except Exception:
            owned.dirty |= dirty
            owned.evicted |= evicted
            raise
        if not ok:
            n = owned.keys.n
            if self.owned.get(n) is owned:
                self._drop(n, "its checkpoint was refused (a newer epoch owns it)")
            return
        owned.checkpointed = cursor

    async def _publish_tick(self) -> None:
        await self._sync_quota(touch=True)
        for n, owned in list(self.owned.items()):
            if (owned.changed or owned.retracted) and self._still_owned(n, owned):
                await self._publish(owned)

    async def _publish(self, owned: Owned) -> None:
        changed, owned.changed = owned.changed, set()
        retracted, owned.retracted = owned.retracted, set()
        if retracted:
            keys = owned.keys
            try:
                fields = [series_id(k) for k in retracted]
                await asyncio.to_thread(
                    self._fenced_unset, keys=[keys.epoch, keys.reports], args=[owned.epoch, *fields]
                )
            except Exception:
                owned.retracted |= retracted
                owned.changed |= changed
                raise
        args: list[Any] = [owned.epoch, ""]
        for key in changed:
            tracked = owned.table.get(key)
            if tracked is not None:
                args += [series_id(key), json.dumps(self.series_object(tracked), separators=(",", ":"))]
        keys = owned.keys
        if len(args) > 2:
            try:
                await asyncio.to_thread(self._fenced, keys=[keys.epoch, keys.reports, keys.stream], args=args)
            except Exception:
                owned.changed |= changed
                raise

    # -- every series, from any replica ------------------------------------------------------------------

    async def series(self, selection: Selection) -> list[dict[str, Any]]:
        """The `SeriesReader` of the read side (`query/`): every series of the cluster (as its owner last
        published it; this replica's own ones as they are now), those `selection` admits, in the API's
        order."""
        if self.partitions is None:
            return []
        partitions = self.partitions
        try:
            published = await asyncio.to_thread(self._read_published, partitions)
        except Exception as exc:
            if _is_redis_error(exc):
                self.health.fail(f"redis {self.store.url}: {exc}")
                published = {}
            else:
                raise
        for owned in self.owned.values():
            for tracked in owned.table:
                published[series_id(tracked.key)] = self.series_object(tracked)
        out = []
        for obj in published.values():
            if not selection.admits(obj):
                continue
            if not selection.timeline:
                obj.pop("timeline", None)
            out.append(obj)
        out.sort(key=order)
        return out

    def _read_published(self, partitions: int) -> dict[str, dict[str, Any]]:
        pipe = self.client.pipeline(transaction=False)
        for n in range(partitions):
            pipe.hgetall(PartitionKeys(self.prefix, n).reports)
        out: dict[str, dict[str, Any]] = {}
        for mapping in pipe.execute():
            for sid, text in mapping.items():
                out[sid.decode()] = json.loads(text)
        return out

    def status(self) -> dict[str, Any]:
        return {
            "replica": self.replica,
            "partitions": self.partitions,
            "owned": sorted(self.owned),
            "takeovers": self.takeovers,
            "handovers": self.handovers,
            "lost": self.lost,
        }


class _OwnedSeries:
    """The series of every partition a node owns, as one collection (for the series gauges)."""

    def __init__(self, node: ClusterNode) -> None:
        self._node = node

    def __len__(self) -> int:
        return sum(len(o.table) for o in list(self._node.owned.values()))

    def __iter__(self) -> Iterator[TrackedSeries]:
        for owned in list(self._node.owned.values()):
            yield from owned.table


class _ClusterMetrics(Collector):
    """This replica's share of the cluster, on /metrics (docs/serve.md)."""

    def __init__(self, node: ClusterNode) -> None:
        self._node = node

    def collect(self) -> Iterator[Metric]:
        node = self._node
        yield GaugeMetricFamily(
            "otel_leakproc_cluster_partitions_owned", "Partitions this replica owns.", value=len(node.owned)
        )
        yield GaugeMetricFamily(
            "otel_leakproc_cluster_series_owned",
            "Series of the partitions this replica owns.",
            value=sum(len(o.table) for o in node.owned.values()),
        )
        moves = CounterMetricFamily(
            "otel_leakproc_cluster_partition_moves",
            "Partitions this replica took over, handed over, or lost (lease not renewed in time, or fenced).",
            labels=["how"],
        )
        moves.add_metric(["takeover"], node.takeovers)
        moves.add_metric(["handover"], node.handovers)
        moves.add_metric(["lost"], node.lost)
        yield moves
        yield CounterMetricFamily(
            "otel_leakproc_cluster_quota_evictions",
            "Series this replica's new series pushed out of their tenant's cluster-wide quota "
            "(state.max_series_per_tenant); their owners evict them and count them in series_evicted.",
            value=node.quota_victims,
        )


def _one_frame(data: bytes, what: str) -> bytes | memoryview:
    frames, tail = read_frames(data)
    if tail is not None or len(frames) != 1:
        raise CodecError(f"{what}: expected one intact record ({tail.reason if tail else len(frames)})")
    return frames[0].payload


Entry = PointRecord | SeriesKey | None  # a stream entry: a point, an eviction, or unreadable (skipped)


def _decode_entry(fields: Mapping[bytes, bytes]) -> Entry:
    try:
        if EVICT_FIELD in fields:
            return from_member(fields[EVICT_FIELD])
        return point_from_payload(_one_frame(fields.get(b"r", b""), "stream record"))
    except (CodecError, ValueError) as exc:
        log.warning("cluster: a stream record cannot be read and is skipped: %s", exc)
        return None


def _is_redis_error(exc: BaseException) -> bool:
    import redis  # noqa: PLC0415

    return isinstance(exc, redis.RedisError | OSError)
