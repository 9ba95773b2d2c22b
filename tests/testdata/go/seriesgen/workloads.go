package main

// The labelled behaviours. Each labelled function is a method of its own that makes the allocation itself
// (go:noinline), so a heap profile charges the bytes to it. The generic workloads below only decide how much
// to allocate when, and keep the exact number of bytes they retain (the unsampled truth in labels.json).

import (
	"math/rand"
	"sync"
	"time"
)

const stepsPerTick = 20

type workload interface {
	step(tick, step int)
	truthBytes() int64 // payload bytes the labelled structure holds now (exact, not sampled)
}

type noWorkload struct{}

func (noWorkload) step(int, int)     {}
func (noWorkload) truthBytes() int64 { return 0 }

// steady: `perTick` bytes a minute in objects of `size`, from tick `start` on, never freed.
type steady struct {
	alloc    func(size int)
	size     int
	perTick  float64
	start    int
	acc      float64
	retained int64
	bound    int64 // > 0: the structure keeps at most this much (a fixed version), for the truth
}

func (w *steady) step(tick, _ int) {
	if tick < w.start {
		return
	}
	w.acc += w.perTick / stepsPerTick
	for w.acc >= float64(w.size) {
		w.alloc(w.size)
		w.acc -= float64(w.size)
		w.retained += int64(w.size)
	}
}
func (w *steady) truthBytes() int64 {
	if w.bound > 0 {
		return min(w.retained, w.bound)
	}
	return w.retained
}

// bursty: `burst` bytes at once every `every` ticks from `start`, never freed.
type bursty struct {
	alloc    func(size int)
	size     int
	burst    int
	start    int
	every    int
	retained int64
}

func (w *bursty) step(tick, step int) {
	if tick < w.start || (tick-w.start)%w.every != 0 || step != 0 {
		return
	}
	for n := 0; n < w.burst; n += w.size {
		w.alloc(w.size)
		w.retained += int64(w.size)
	}
}
func (w *bursty) truthBytes() int64 { return w.retained }

// mostlyFreed: `perTick` bytes a minute from one function; a fraction `keep` is never released, the rest
// lives briefly in a ring (open sessions) and is dropped.
type mostlyFreed struct {
	open     func(size int) []byte
	rng      *rand.Rand
	size     int
	perTick  float64
	keep     float64
	start    int
	ring     [][]byte
	next     int
	leaked   [][]byte
	acc      float64
	retained int64
}

func (w *mostlyFreed) step(tick, _ int) {
	w.acc += w.perTick / stepsPerTick
	for w.acc >= float64(w.size) {
		w.acc -= float64(w.size)
		obj := w.open(w.size)
		if tick >= w.start && w.rng.Float64() < w.keep {
			w.leaked = append(w.leaked, obj)
			w.retained += int64(w.size)
			continue
		}
		w.ring[w.next%len(w.ring)] = obj
		w.next++
	}
}
func (w *mostlyFreed) truthBytes() int64 { return w.retained }

// cacheFill: lookups over a finite key space; a miss stores the value. The filled share follows
// 1 - exp(-t/tau): growth decelerates and the cache is bounded by the key space.
type cacheFill struct {
	lookup   func(key, size int) bool
	rng      *rand.Rand
	size     int
	keys     int
	perTick  float64 // lookups a minute = keys / tau
	acc      float64
	retained int64
}

func (w *cacheFill) step(int, int) {
	w.acc += w.perTick / stepsPerTick
	for ; w.acc >= 1; w.acc-- {
		if w.lookup(w.rng.Intn(w.keys), w.size) {
			w.retained += int64(w.size)
		}
	}
}
func (w *cacheFill) truthBytes() int64 { return w.retained }

// flushing: a buffer grows `perTick` bytes a minute and is emptied completely every `every` ticks.
type flushing struct {
	buffer   func(size int)
	flush    func()
	size     int
	perTick  float64
	every    int
	acc      float64
	retained int64
}

func (w *flushing) step(tick, step int) {
	if step == 0 && tick > 0 && tick%w.every == 0 {
		w.flush()
		w.retained = 0
	}
	w.acc += w.perTick / stepsPerTick
	for w.acc >= float64(w.size) {
		w.buffer(w.size)
		w.acc -= float64(w.size)
		w.retained += int64(w.size)
	}
}
func (w *flushing) truthBytes() int64 { return w.retained }

// goroutineLeak: a sync push per step whose ack goroutine normally gets its ack; every `every` ticks from
// `start` one push times out and its ack goroutine blocks forever.
type goroutineLeak struct {
	s      *inventorySyncer
	start  int
	every  int
	leaked int64
}

func (w *goroutineLeak) step(tick, step int) {
	leak := tick >= w.start && (tick-w.start)%w.every == 0 && step == 0
	w.s.pushStockDelta(leak)
	if leak {
		w.leaked++
	}
}
func (w *goroutineLeak) truthBytes() int64 { return w.leaked } // leaked goroutines, not bytes

// contention: readers take a mutex all the time; from `start` a rebuild holds it for `hold` of every step.
type contention struct {
	l     *ledgerService
	start int
	hold  time.Duration
	once  sync.Once
}

func (w *contention) step(tick, _ int) {
	w.once.Do(func() {
		for i := 0; i < 12; i++ {
			go func(k int) {
				for {
					w.l.readBalance(k)
					time.Sleep(time.Millisecond)
				}
			}(i)
		}
	})
	hold := time.Duration(0)
	if tick >= w.start {
		hold = w.hold
	}
	w.l.rebuildBalances(hold)
}
func (w *contention) truthBytes() int64 { return 0 }

// ---- the labelled types (one per scenario, so every series names its own function) ----

type auditTrail struct{ events [][]byte }

//go:noinline
func (a *auditTrail) recordLoginEvent(size int) {
	e := make([]byte, size)
	e[0] = 1
	a.events = append(a.events, e)
}

type thumbnailCache struct{ thumbs map[int][]byte }

//go:noinline
func (c *thumbnailCache) storeRenderedThumbnail(size int) {
	t := make([]byte, size)
	t[0] = 1
	c.thumbs[len(c.thumbs)] = t
}

type featureFlagClient struct{ seen [][]byte }

//go:noinline
func (c *featureFlagClient) rememberEvaluation(size int) {
	e := make([]byte, size)
	e[0] = 1
	c.seen = append(c.seen, e)
}

type reportScheduler struct{ pages [][]byte }

//go:noinline
func (r *reportScheduler) retainReportPages(size int) {
	p := make([]byte, size)
	p[0] = 1
	r.pages = append(r.pages, p)
}

type sessionStore struct{}

//go:noinline
func (s *sessionStore) openSession(size int) []byte {
	b := make([]byte, size)
	b[0] = 1
	return b
}

type geoIPResolver struct{ cache map[int][]byte }

//go:noinline
func (g *geoIPResolver) lookupPrefix(key, size int) bool {
	if _, ok := g.cache[key]; ok {
		return false
	}
	v := make([]byte, size)
	v[0] = 1
	g.cache[key] = v
	return true
}

type metricsBatcher struct{ pending [][]byte }

//go:noinline
func (m *metricsBatcher) bufferDataPoint(size int) {
	p := make([]byte, size)
	p[0] = 1
	m.pending = append(m.pending, p)
}

func (m *metricsBatcher) flushToBackend() { m.pending = nil }

type webhookRetryQueue struct{ failed [][]byte }

//go:noinline
func (q *webhookRetryQueue) enqueueFailedDelivery(size int) {
	d := make([]byte, size)
	d[0] = 1
	q.failed = append(q.failed, d)
}

// priceRuleEngine: v1 keys compiled rules by a counter that never repeats (the leak); the fix keeps at most
// 256 (a bounded map), from the same function.
type priceRuleEngine struct {
	rules   map[int][]byte
	bounded bool
	n       int
}

//go:noinline
func (e *priceRuleEngine) compileRule(size int) {
	r := make([]byte, size)
	r[0] = 1
	key := e.n
	if e.bounded {
		key %= 256
	}
	e.rules[key] = r
	e.n++
}

type inventorySyncer struct{}

//go:noinline
func (s *inventorySyncer) pushStockDelta(leak bool) {
	ack := make(chan struct{})
	go s.awaitSyncAck(ack)
	if !leak {
		ack <- struct{}{}
	}
}

//go:noinline
func (s *inventorySyncer) awaitSyncAck(ack chan struct{}) {
	<-ack
}

type ledgerService struct {
	mu       sync.Mutex
	balances map[int]int64
}

//go:noinline
func (l *ledgerService) rebuildBalances(hold time.Duration) {
	l.mu.Lock()
	for k := range l.balances {
		l.balances[k]++
	}
	time.Sleep(hold)
	l.mu.Unlock()
}

//go:noinline
func (l *ledgerService) readBalance(k int) int64 {
	l.mu.Lock()
	v := l.balances[k]
	l.mu.Unlock()
	return v
}

type searchIndexer struct{ postings map[int][]byte }

//go:noinline
func (s *searchIndexer) indexDocument(size int) {
	p := make([]byte, size)
	p[0] = 1
	s.postings[len(s.postings)] = p
}

type pdfRenderer struct{ pages [][]byte }

//go:noinline
func (r *pdfRenderer) keepRenderedPage(size int) {
	p := make([]byte, size)
	p[0] = 1
	r.pages = append(r.pages, p)
}

type exportJobRunner struct{ chunks [][]byte }

//go:noinline
func (r *exportJobRunner) stashExportChunk(size int) {
	c := make([]byte, size)
	c[0] = 1
	r.chunks = append(r.chunks, c)
}

type rpcTracer struct{}

//go:noinline
func (t *rpcTracer) startSpan(size int) []byte {
	s := make([]byte, size)
	s[0] = 1
	return s
}

type tokenIntrospector struct{ cache map[int][]byte }

//go:noinline
func (t *tokenIntrospector) cacheIntrospection(key, size int) bool {
	if _, ok := t.cache[key]; ok {
		return false
	}
	v := make([]byte, size)
	v[0] = 1
	t.cache[key] = v
	return true
}

type logShipper struct{ lines [][]byte }

//go:noinline
func (l *logShipper) bufferLogLine(size int) {
	b := make([]byte, size)
	b[0] = 1
	l.lines = append(l.lines, b)
}

func (l *logShipper) shipBatch() { l.lines = nil }

type connectionRegistry struct{ conns map[int][]byte }

//go:noinline
func (r *connectionRegistry) trackConnection(size int) {
	c := make([]byte, size)
	c[0] = 1
	r.conns[len(r.conns)] = c
}

func perTickForTau(keys int, tau float64) float64 { return float64(keys) / tau }
