package main

// The scenario table: what each series runs and what labels.json says about it. HELDOUT.md (next to the
// generated series) fixed the names, sets and truths before any series was generated or scored.

import (
	"math/rand"
	"time"
)

const (
	KiB = 1 << 10
	MiB = 1 << 20
)

// segment: one process. A scenario with two segments is a restart (a deploy) at the second one's first tick.
type segment struct {
	version string
	first   int // first profile number
	last    int
	warmup  int // minutes the process runs before its first profile
}

type scenario struct {
	name       string
	set        string // "tuning" or "heldout"
	seed       int64
	gogc       int
	memLimit   int64
	requests   int // churn requests per step
	digest     int // bytes of the occasional digest
	contention bool
	segments   []segment
	label      map[string]any
	make       func(seg int, rng *rand.Rand) workload
}

// defaultProfiles is the length of the committed one-process series (-profiles stretches them).
const defaultProfiles = 60

func oneProcess(version string) []segment {
	return []segment{{version: version, first: 0, last: defaultProfiles - 1, warmup: 3}}
}

func heapLeak(fn string, start int, perTick, size int, notes string) map[string]any {
	return map[string]any{
		"heap_leak": true, "leak_function": fn, "leak_start_tick": start,
		"leak_rate_bytes_per_tick_nominal": perTick, "leak_object_bytes": size, "notes": notes,
	}
}

func noLeak(fn string, notes string) map[string]any {
	return map[string]any{"heap_leak": false, "leak_function": nil, "leak_start_tick": nil, "bounded_function": fn, "notes": notes}
}

var scenarios = []*scenario{
	// ---------------------------------------------------------------- tuning set
	{
		name: "small_object_leak", set: "tuning", seed: 1401, gogc: 100, requests: 60, digest: 4 * MiB,
		segments: oneProcess("v3.2.0"),
		label: heapLeak("main.(*auditTrail).recordLoginEvent", 6, 240*KiB, 512,
			"512 B login events appended to a slice that is never trimmed, 240 KiB/min from profile 6. No forced GC."),
		make: func(_ int, _ *rand.Rand) workload {
			a := &auditTrail{}
			return &steady{alloc: a.recordLoginEvent, size: 512, perTick: 240 * KiB, start: 6}
		},
	},
	{
		name: "large_buffer_leak", set: "tuning", seed: 1402, gogc: 400, requests: 60, digest: 4 * MiB,
		segments: oneProcess("v0.9.4"),
		label: heapLeak("main.(*thumbnailCache).storeRenderedThumbnail", 3, 2*MiB, 128*KiB,
			"128 KiB thumbnails stored in a map keyed by a counter (never evicted), 2 MiB/min from profile 3. GOGC=400, no forced GC."),
		make: func(_ int, _ *rand.Rand) workload {
			c := &thumbnailCache{thumbs: map[int][]byte{}}
			return &steady{alloc: c.storeRenderedThumbnail, size: 128 * KiB, perTick: 2 * MiB, start: 3}
		},
	},
	{
		name: "trickle_leak", set: "tuning", seed: 1403, gogc: 50, requests: 60, digest: 4 * MiB,
		segments: oneProcess("v1.0.2"),
		label: heapLeak("main.(*featureFlagClient).rememberEvaluation", 0, 20*KiB, 256,
			"256 B flag evaluations kept forever, 20 KiB/min from start-up: about one heap sample (512 KiB) every 25 minutes, so the sampled site moves in two or three steps per hour. GOGC=50, no forced GC."),
		make: func(_ int, _ *rand.Rand) workload {
			c := &featureFlagClient{}
			return &steady{alloc: c.rememberEvaluation, size: 256, perTick: 20 * KiB, start: -3}
		},
	},
	{
		name: "bursty_leak", set: "tuning", seed: 1404, gogc: 100, requests: 60, digest: 4 * MiB,
		segments: oneProcess("v2.1.0"),
		label: heapLeak("main.(*reportScheduler).retainReportPages", 5, 256*KiB, 64*KiB,
			"A nightly-style job retains 2.5 MiB of 64 KiB pages at once, every 10 min (profiles 5, 15, ..., 55): a staircase, 256 KiB/min on average. No forced GC."),
		make: func(_ int, _ *rand.Rand) workload {
			r := &reportScheduler{}
			return &bursty{alloc: r.retainReportPages, size: 64 * KiB, burst: 2560 * KiB, start: 5, every: 10}
		},
	},
	{
		name: "mostly_freed_site_leak", set: "tuning", seed: 1405, gogc: 100, requests: 60, digest: 4 * MiB,
		segments: oneProcess("v5.0.1"),
		label: heapLeak("main.(*sessionStore).openSession", 0, 164*KiB, 1*KiB,
			"openSession allocates 4 MiB/min of 1 KiB sessions; 96% are closed after a short while (a ring of 512 open sessions), 4% are never closed: ~164 KiB/min retained at a site whose allocation volume is 25x its leak. No forced GC."),
		make: func(_ int, rng *rand.Rand) workload {
			s := &sessionStore{}
			return &mostlyFreed{open: s.openSession, rng: rng, size: 1 * KiB, perTick: 4 * MiB, keep: 0.04, start: -3, ring: make([][]byte, 512)}
		},
	},
	{
		name: "cache_fill_decelerating", set: "tuning", seed: 1406, gogc: 100, requests: 60, digest: 4 * MiB,
		segments: oneProcess("v1.7.3"),
		label: noLeak("main.(*geoIPResolver).lookupPrefix",
			"NOT a leak: a cache over 24576 prefixes of 512 B (12 MiB) filled by uniform lookups; the filled share follows 1 - exp(-t / 12 min) from process start, so growth decelerates (about 1% of the key space is still missing at the end). No forced GC."),
		make: func(_ int, rng *rand.Rand) workload {
			g := &geoIPResolver{cache: map[int][]byte{}}
			return &cacheFill{lookup: g.lookupPrefix, rng: rng, size: 512, keys: 24576, perTick: perTickForTau(24576, 12)}
		},
	},
	{
		name: "periodic_full_flush", set: "tuning", seed: 1407, gogc: 100, requests: 60, digest: 4 * MiB,
		segments: oneProcess("v4.4.0"),
		label: noLeak("main.(*metricsBatcher).bufferDataPoint",
			"NOT a leak: 2 KiB data points buffered at 700 KiB/min and flushed completely every 12 min (at profiles 12, 24, 36, 48): a sawtooth up to ~8 MiB. No forced GC."),
		make: func(_ int, _ *rand.Rand) workload {
			m := &metricsBatcher{}
			return &flushing{buffer: m.bufferDataPoint, flush: m.flushToBackend, size: 2 * KiB, perTick: 700 * KiB, every: 12}
		},
	},
	{
		name: "memlimit_leak", set: "tuning", seed: 1408, gogc: 400, memLimit: 80 * MiB, requests: 60, digest: 4 * MiB,
		segments: oneProcess("v2.3.1"),
		label: heapLeak("main.(*webhookRetryQueue).enqueueFailedDelivery", 0, 1*MiB, 4*KiB,
			"4 KiB failed webhook deliveries queued for a retry that never drains, 1 MiB/min from start-up. GOGC=400 with GOMEMLIMIT=80MiB: the retained heap reaches the limit around profile 70 (time to limit), the collector runs more often as it nears it. No forced GC."),
		make: func(_ int, _ *rand.Rand) workload {
			q := &webhookRetryQueue{}
			return &steady{alloc: q.enqueueFailedDelivery, size: 4 * KiB, perTick: 1 * MiB, start: -3}
		},
	},
	{
		name: "deploy_fixes_leak", set: "tuning", seed: 1409, gogc: 100, requests: 60, digest: 4 * MiB,
		segments: []segment{{version: "v1.4.1", first: 0, last: 31, warmup: 3}, {version: "v1.4.2", first: 32, last: 59, warmup: 1}},
		label: mergeLabels(heapLeak("main.(*priceRuleEngine).compileRule", 0, 400*KiB, 2*KiB,
			"v1.4.1 keys compiled 2 KiB price rules by a counter that never repeats, 400 KiB/min from start-up. At profile 32 the service restarts with v1.4.2, where compileRule keeps at most 256 rules (512 KiB): fixed. No forced GC."),
			map[string]any{"restart_tick": 32, "heap_leak_after_restart": false}),
		make: func(seg int, _ *rand.Rand) workload {
			e := &priceRuleEngine{rules: map[int][]byte{}, bounded: seg == 1}
			w := &steady{alloc: e.compileRule, size: 2 * KiB, perTick: 400 * KiB, start: -3}
			if e.bounded {
				w.bound = 256 * 2 * KiB
			}
			return w
		},
	},
	{
		name: "churn_only_gogc400", set: "tuning", seed: 1410, gogc: 400, requests: 160, digest: 12 * MiB,
		segments: oneProcess("v8.0.0"),
		label: noLeak("main.(*apiServer).buildDailyDigest",
			"NOT a leak: heavy request churn (about 2.7x the other series) and a 6-18 MiB digest built and dropped now and then, GOGC=400: large swings, no trend. No forced GC."),
		make: func(_ int, _ *rand.Rand) workload { return noWorkload{} },
	},
	{
		name: "goroutine_slow_leak", set: "tuning", seed: 1411, gogc: 100, requests: 60, digest: 4 * MiB,
		segments: oneProcess("v1.2.0"),
		label: map[string]any{
			"heap_leak": false, "leak_function": nil, "leak_start_tick": 5,
			"goroutine_leak": true, "goroutine_leak_function": "main.(*inventorySyncer).awaitSyncAck",
			"goroutine_leak_spawner": "main.(*inventorySyncer).pushStockDelta", "goroutine_leak_start_tick": 5,
			"goroutine_leak_state": "chan receive", "goroutines_leaked_per_tick_nominal": 0.5,
			"notes": "Slow goroutine leak: pushStockDelta starts awaitSyncAck 20 times a minute and acks it; once every 2 min from profile 5 the ack is skipped and that goroutine blocks forever in chan receive (28 leaked by profile 59). No heap leak. No forced GC.",
		},
		make: func(_ int, _ *rand.Rand) workload {
			return &goroutineLeak{s: &inventorySyncer{}, start: 5, every: 2}
		},
	},
	{
		name: "late_contention", set: "tuning", seed: 1412, gogc: 50, requests: 60, digest: 4 * MiB, contention: true,
		segments: oneProcess("v3.0.0"),
		label: map[string]any{
			"heap_leak": false, "leak_function": nil, "leak_start_tick": nil,
			"contention": true, "contention_function": "main.(*ledgerService).rebuildBalances",
			"contention_waiter_function": "main.(*ledgerService).readBalance", "contention_start_tick": 20,
			"contention_lock": "main.ledgerService.mu (sync.Mutex)",
			"notes":           "From profile 20 rebuildBalances holds the ledger mutex for 40% of the time (20 ms of every 50 ms step of the compressed minute) while 12 readers call readBalance every millisecond; before profile 20 it holds it for microseconds. SetMutexProfileFraction(5), SetBlockProfileRate(10000). GOGC=50, no heap leak, no forced GC.",
		},
		make: func(_ int, _ *rand.Rand) workload {
			l := &ledgerService{balances: map[int]int64{}}
			for i := 0; i < 64; i++ {
				l.balances[i] = int64(i)
			}
			return &contention{l: l, start: 20, hold: 20 * time.Millisecond}
		},
	},
	// ---------------------------------------------------------------- held-out set
	{
		name: "search_index_leak", set: "heldout", seed: 1421, gogc: 50, requests: 60, digest: 4 * MiB,
		segments: oneProcess("v6.1.0"),
		label: heapLeak("main.(*searchIndexer).indexDocument", 10, 150*KiB, 1*KiB,
			"1 KiB postings added to a map keyed by a counter, never removed, 150 KiB/min from profile 10. GOGC=50, no forced GC."),
		make: func(_ int, _ *rand.Rand) workload {
			s := &searchIndexer{postings: map[int][]byte{}}
			return &steady{alloc: s.indexDocument, size: 1 * KiB, perTick: 150 * KiB, start: 10}
		},
	},
	{
		name: "large_object_slow_leak", set: "heldout", seed: 1422, gogc: 100, requests: 60, digest: 4 * MiB,
		segments: oneProcess("v0.4.0"),
		label: heapLeak("main.(*pdfRenderer).keepRenderedPage", 0, 96*KiB, 64*KiB,
			"64 KiB rendered pages kept in a slice, 96 KiB/min (three pages every two minutes) from start-up. No forced GC."),
		make: func(_ int, _ *rand.Rand) workload {
			r := &pdfRenderer{}
			return &steady{alloc: r.keepRenderedPage, size: 64 * KiB, perTick: 96 * KiB, start: -3}
		},
	},
	{
		name: "bursty_large_leak", set: "heldout", seed: 1423, gogc: 400, requests: 60, digest: 4 * MiB,
		segments: oneProcess("v2.0.3"),
		label: heapLeak("main.(*exportJobRunner).stashExportChunk", 8, 410*KiB, 256*KiB,
			"An export job stashes 4 MiB of 256 KiB chunks at once, every 10 min (profiles 8, 18, ..., 58), never released: a staircase, ~410 KiB/min on average. GOGC=400, no forced GC."),
		make: func(_ int, _ *rand.Rand) workload {
			r := &exportJobRunner{}
			return &bursty{alloc: r.stashExportChunk, size: 256 * KiB, burst: 4 * MiB, start: 8, every: 10}
		},
	},
	{
		name: "mostly_freed_small_leak", set: "heldout", seed: 1424, gogc: 400, requests: 60, digest: 4 * MiB,
		segments: oneProcess("v1.9.0"),
		label: heapLeak("main.(*rpcTracer).startSpan", 0, 92*KiB, 256,
			"startSpan allocates 6 MiB/min of 256 B spans; 98.5% are finished after a short while (a ring of 4096 open spans), 1.5% are never finished: ~92 KiB/min retained. GOGC=400, no forced GC."),
		make: func(_ int, rng *rand.Rand) workload {
			t := &rpcTracer{}
			return &mostlyFreed{open: t.startSpan, rng: rng, size: 256, perTick: 6 * MiB, keep: 0.015, start: -3, ring: make([][]byte, 4096)}
		},
	},
	{
		name: "cache_fill_slow", set: "heldout", seed: 1425, gogc: 50, requests: 60, digest: 4 * MiB,
		segments: oneProcess("v3.3.3"),
		label: noLeak("main.(*tokenIntrospector).cacheIntrospection",
			"NOT a leak: a cache over 16384 tokens of 1 KiB (16 MiB) filled by uniform lookups; the filled share follows 1 - exp(-t / 20 min) from process start (about 4% still missing at the end, growing ~50 KiB/min then). GOGC=50, no forced GC."),
		make: func(_ int, rng *rand.Rand) workload {
			t := &tokenIntrospector{cache: map[int][]byte{}}
			return &cacheFill{lookup: t.cacheIntrospection, rng: rng, size: 1 * KiB, keys: 16384, perTick: perTickForTau(16384, 20)}
		},
	},
	{
		name: "periodic_flush_gogc400", set: "heldout", seed: 1426, gogc: 400, requests: 60, digest: 4 * MiB,
		segments: oneProcess("v7.2.0"),
		label: noLeak("main.(*logShipper).bufferLogLine",
			"NOT a leak: 1 KiB log lines buffered at 400 KiB/min and shipped (dropped) completely every 20 min (at profiles 20 and 40): a sawtooth up to ~8 MiB. GOGC=400, no forced GC."),
		make: func(_ int, _ *rand.Rand) workload {
			l := &logShipper{}
			return &flushing{buffer: l.bufferLogLine, flush: l.shipBatch, size: 1 * KiB, perTick: 400 * KiB, every: 20}
		},
	},
	{
		name: "deploy_does_not_fix", set: "heldout", seed: 1427, gogc: 100, requests: 60, digest: 4 * MiB,
		segments: []segment{{version: "v2.0.0", first: 0, last: 29, warmup: 3}, {version: "v2.0.1", first: 30, last: 59, warmup: 1}},
		label: mergeLabels(heapLeak("main.(*connectionRegistry).trackConnection", 0, 300*KiB, 3*KiB,
			"v2.0.0 tracks 3 KiB connection records in a map that nothing prunes, 300 KiB/min from start-up. At profile 30 the service restarts with v2.0.1, which leaks the same way: the deploy did not fix it. No forced GC."),
			map[string]any{"restart_tick": 30, "heap_leak_after_restart": true}),
		make: func(_ int, _ *rand.Rand) workload {
			r := &connectionRegistry{conns: map[int][]byte{}}
			return &steady{alloc: r.trackConnection, size: 3 * KiB, perTick: 300 * KiB, start: -3}
		},
	},
}

func mergeLabels(a, b map[string]any) map[string]any {
	for k, v := range b {
		a[k] = v
	}
	return a
}

func findScenario(name string) *scenario {
	for _, s := range scenarios {
		if s.name == name {
			return s
		}
	}
	return nil
}
