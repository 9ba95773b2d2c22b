"""The partition map: which partition a series belongs to, and the Redis keys of a partition.

A series' partition is a stable hash (CRC-32, never Python's salted `hash()`) of its tenant, service and
instance, modulo the cluster's partition count: every kind of one process lands in the same partition. The
count is fixed when the first replica creates the cluster (`SET NX` of the count key) and read back by
every later replica, whatever it was configured with.

Several `serve` processes on one machine (`server.processes`, file or memory state) use the same map with
`LOCAL_PARTITIONS` fixed partitions: process i of N owns the partitions p with p % N == i (`local_owner`),
so a series is always processed by one process, whichever process received its upload.

Every key of a partition carries the hash tag `{p<N>}`, so on a Redis Cluster they live in one slot and
the scripts that touch several of them (a fenced checkpoint, a lease) work there too.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass


def partition_of(tenant: str, service: str, instance: str, partitions: int) -> int:
    """The partition of a process's series: CRC-32 of the three names, modulo the partition count."""
    text = f"{tenant}\x1f{service}\x1f{instance}"
    return zlib.crc32(text.encode("utf-8")) % partitions


LOCAL_PARTITIONS = 64  # the partitions of one machine's `serve` processes (file or memory state)


def local_owner(tenant: str, service: str, instance: str, processes: int) -> int:
    """Which of `processes` local processes owns a process's series: its partition modulo the count."""
    return partition_of(tenant, service, instance, LOCAL_PARTITIONS) % processes


@dataclass(frozen=True, slots=True)
class PartitionKeys:
    """The keys of partition `n` under `prefix`."""

    prefix: str
    n: int

    @property
    def tag(self) -> str:
        return f"{self.prefix}:{{p{self.n}}}"

    @property
    def stream(self) -> str:
        """The partition's point records, in arrival order (XADD by any replica)."""
        return f"{self.tag}:points"

    @property
    def checkpoints(self) -> str:
        """Hash: series id -> checkpoint frame; `cursor` -> the last stream id the checkpoints cover."""
        return f"{self.tag}:checkpoints"

    @property
    def lease(self) -> str:
        """The owner's replica id, with a TTL (SET NX PX)."""
        return f"{self.tag}:lease"

    @property
    def epoch(self) -> str:
        """The fencing epoch: incremented on every acquisition; a write carrying an older one is refused."""
        return f"{self.tag}:epoch"

    @property
    def reports(self) -> str:
        """Hash: series id -> the series' API object (JSON), written by the owner, read by every replica."""
        return f"{self.tag}:reports"

    @property
    def sent(self) -> str:
        """Hash: series id -> the id of the last event exported for it (so a handoff never repeats one)."""
        return f"{self.tag}:sent"


def count_key(prefix: str) -> str:
    return f"{prefix}:partitions"


def members_key(prefix: str) -> str:
    """Sorted set: replica id -> the time (ms) its membership expires (renewed with its leases)."""
    return f"{prefix}:members"
