// inventory reproduces, at a small scale, the incident otel-leakproc exists for (docs/tutorial.md): an
// inventory service whose order processor keeps every batch it ever processed, and whose stock map has one
// map-wide sync.RWMutex that the batch deduction holds in write mode while it waits for the warehouse, so
// every stock-read worker queues behind it.
//
// It is a plain net/http service with net/http/pprof, standard library only, and drives itself: a built-in
// load generator submits orders and asks for stock levels, so profiles show the incident without outside
// traffic.
//
//	inventory [-listen 127.0.0.1:6060] [-version v1] [-fixed]
//
// -fixed is the fix the incident ended with: one lock per stock shard instead of one for the map, the
// warehouse call made outside any lock, and batches released once processed. The first line on stdout is
// "listening on ADDR"; GET /stats answers the figures the on-call person would watch (JSON).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"math/rand"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Item is one order line on its way through a batch.
type Item struct {
	SKU   int
	Qty   int
	Order uint64
	// Note is what the order carried for this line (gift text, packing notes): the bulk of an Item.
	Note []byte
}

// OrderLine is what a customer orders.
type OrderLine struct {
	SKU int
	Qty int
}

// Order is a submitted order.
type Order struct {
	ID    uint64
	Lines []OrderLine
}

// StockStore is the stock map the processor deducts from and the stock workers read.
type StockStore interface {
	Get(sku int) int
	DeductBatch(batch []*Item, confirm func())
}

// LockedStockMap is the original store: one RWMutex for the whole map.
type LockedStockMap struct {
	mu    sync.RWMutex
	stock map[int]int
}

func NewLockedStockMap(skus int) *LockedStockMap {
	m := &LockedStockMap{stock: make(map[int]int, skus)}
	for sku := 0; sku < skus; sku++ {
		m.stock[sku] = 1 << 30
	}
	return m
}

// Get is a stock read: it queues behind any writer.
//
//go:noinline
func (m *LockedStockMap) Get(sku int) int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.stock[sku]
}

// DeductBatch is the bug's second half: it takes the map-wide write lock for the whole batch and keeps it
// while the warehouse confirms the reservation, so every reader waits for the round trip.
//
//go:noinline
func (m *LockedStockMap) DeductBatch(batch []*Item, confirm func()) {
	m.mu.Lock()
	for _, item := range batch {
		m.stock[item.SKU] -= item.Qty
	}
	confirm()
	m.mu.Unlock()
}

const shards = 64

// ShardedStockMap is the fix: one lock per shard of SKUs, held only for the map update itself.
type ShardedStockMap struct {
	shards [shards]struct {
		mu    sync.RWMutex
		stock map[int]int
	}
}

func NewShardedStockMap(skus int) *ShardedStockMap {
	m := &ShardedStockMap{}
	for i := range m.shards {
		m.shards[i].stock = make(map[int]int, skus/shards+1)
	}
	for sku := 0; sku < skus; sku++ {
		m.shards[sku%shards].stock[sku] = 1 << 30
	}
	return m
}

//go:noinline
func (m *ShardedStockMap) Get(sku int) int {
	s := &m.shards[sku%shards]
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.stock[sku]
}

//go:noinline
func (m *ShardedStockMap) DeductBatch(batch []*Item, confirm func()) {
	confirm()
	for _, item := range batch {
		s := &m.shards[item.SKU%shards]
		s.mu.Lock()
		s.stock[item.SKU] -= item.Qty
		s.mu.Unlock()
	}
}

// OrderProcessor turns submitted orders into batches of items and deducts them from the stock.
type OrderProcessor struct {
	store     StockStore
	orders    chan Order
	fixed     bool
	noteBytes int
	warehouse time.Duration

	// processed is the bug's first half: every batch is kept "for end-of-day reconciliation", and nothing
	// ever trims it. Only the processor goroutine touches it.
	processed [][]*Item

	retainedItems   atomic.Int64
	ordersProcessed atomic.Int64
}

// processBatch builds the batch's items (allocated here, so the heap profile names this function) and
// deducts them; the original keeps the batch forever, the fixed one lets it go.
//
//go:noinline
func (p *OrderProcessor) processBatch(orders []Order) {
	batch := make([]*Item, 0, 2*len(orders))
	for _, order := range orders {
		for _, line := range order.Lines {
			note := make([]byte, p.noteBytes)
			for i := range note {
				note[i] = byte(order.ID) + byte(i)
			}
			batch = append(batch, &Item{SKU: line.SKU, Qty: line.Qty, Order: order.ID, Note: note})
		}
	}
	p.store.DeductBatch(batch, p.confirmWithWarehouse)
	if !p.fixed {
		p.processed = append(p.processed, batch)
		p.retainedItems.Add(int64(len(batch)))
	}
	p.ordersProcessed.Add(int64(len(orders)))
}

// confirmWithWarehouse stands for the reservation round trip to the warehouse system.
func (p *OrderProcessor) confirmWithWarehouse() {
	time.Sleep(p.warehouse)
}

// run processes whatever orders are waiting as one batch, again and again.
func (p *OrderProcessor) run(maxBatch int) {
	for first := range p.orders {
		orders := []Order{first}
	drain:
		for len(orders) < maxBatch {
			select {
			case o := <-p.orders:
				orders = append(orders, o)
			default:
				break drain
			}
		}
		p.processBatch(orders)
	}
}

// latencies keeps the last stock-read latencies of one worker (written by that worker only).
type latencies struct {
	next   atomic.Int64
	values [64]atomic.Int64
}

func (l *latencies) add(d time.Duration) {
	i := l.next.Add(1) - 1
	l.values[i%int64(len(l.values))].Store(int64(d))
}

// loadGenerator submits orders and requests stock reads at steady rates, like the shop front would.
type loadGenerator struct {
	store        StockStore
	orders       chan<- Order
	skus         int
	perSec       int
	requestBytes int
	readsPerSec  int
	requests     []chan time.Time // per worker: stock-read requests waiting, stamped when they arrived
	readers      []*latencies
	reads        atomic.Int64
	shed         atomic.Int64
}

// receiveOrder stands for the order endpoint: the request body is read into a buffer and parsed, and the
// buffer becomes garbage. This churn is what keeps a real service's garbage collector busy (a heap
// profile shows the heap as of the last completed GC, so it moves at every cycle).
//
//go:noinline
func receiveOrder(id uint64, body []byte, skus int) Order {
	for i := range body {
		body[i] = byte(id) ^ byte(i)
	}
	sku := int(body[0]) * int(body[len(body)-1]) % skus
	return Order{ID: id, Lines: []OrderLine{{SKU: sku, Qty: 1}, {SKU: rand.Intn(skus), Qty: 2}}}
}

func (g *loadGenerator) submitOrders() {
	tick := time.NewTicker(time.Second / time.Duration(g.perSec))
	defer tick.Stop()
	var id uint64
	for range tick.C {
		id++
		g.orders <- receiveOrder(id, make([]byte, g.requestBytes), g.skus)
	}
}

// requestStock is the shop front asking for stock levels: readsPerSec requests, handed to the workers in
// turn (one queue each, so they do not contend on one channel). When a worker's queue is full the request
// is shed (the front end shows a cached value).
func (g *loadGenerator) requestStock() {
	const tick = 10 * time.Millisecond
	perTick := max(g.readsPerSec/int(time.Second/tick), 1)
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	next := 0
	for now := range ticker.C {
		for i := 0; i < perTick; i++ {
			select {
			case g.requests[next] <- now:
			default:
				g.shed.Add(1)
			}
			next = (next + 1) % len(g.requests)
		}
	}
}

// stockWorker answers stock-read requests, one at a time; the latency counts the time queued.
func (g *loadGenerator) stockWorker(requests <-chan time.Time, lat *latencies) {
	for queued := range requests {
		g.store.Get(rand.Intn(g.skus))
		lat.add(time.Since(queued))
		g.reads.Add(1)
	}
}

func (g *loadGenerator) readP95() time.Duration {
	var all []int64
	for _, l := range g.readers {
		n := l.next.Load()
		if n > int64(len(l.values)) {
			n = int64(len(l.values))
		}
		for i := int64(0); i < n; i++ {
			all = append(all, l.values[i].Load())
		}
	}
	if len(all) == 0 {
		return 0
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	return time.Duration(all[(len(all)*95)/100])
}

type stats struct {
	Version         string  `json:"version"`
	Fixed           bool    `json:"fixed"`
	UptimeSeconds   float64 `json:"uptime_seconds"`
	OrdersProcessed int64   `json:"orders_processed"`
	RetainedItems   int64   `json:"retained_items"`
	StockReads      int64   `json:"stock_reads"`
	ReadsShed       int64   `json:"reads_shed"`
	ReadP95Ms       float64 `json:"read_p95_ms"`
	HeapInuseBytes  uint64  `json:"heap_inuse_bytes"`
	NumGC           uint32  `json:"num_gc"`
	LastGCPauseMs   float64 `json:"last_gc_pause_ms"`
	Goroutines      int     `json:"goroutines"`
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "HOST:PORT for the HTTP server (pprof, /stock, /stats)")
	version := flag.String("version", "v1", "version reported on /version and /stats")
	fixed := flag.Bool("fixed", false, "run the fixed code: sharded stock locks, batches released")
	ordersPerSec := flag.Int("orders-per-second", 100, "orders submitted per second by the built-in load")
	readers := flag.Int("readers", 37, "stock-read workers")
	readsPerSec := flag.Int("reads-per-second", 1000, "stock reads requested per second by the built-in load")
	noteBytes := flag.Int("note-bytes", 1536, "bytes of order notes per item (what the leak keeps)")
	requestBytes := flag.Int("request-bytes", 32<<10, "bytes of request body per order (short-lived garbage)")
	warehouse := flag.Duration("warehouse-latency", 200*time.Millisecond, "warehouse round trip per batch")
	flag.Parse()
	if *ordersPerSec < 1 || *readsPerSec < 1 || *readers < 1 || *noteBytes < 0 || *warehouse < 0 {
		fmt.Fprintln(os.Stderr, "inventory: -orders-per-second, -reads-per-second and -readers must be at least 1, "+
			"-note-bytes and -warehouse-latency not negative")
		os.Exit(2)
	}

	// Record every contended lock and every blocking event, so the mutex and block profiles show them.
	runtime.SetMutexProfileFraction(1)
	runtime.SetBlockProfileRate(1)

	const skus = 4096
	var store StockStore = NewLockedStockMap(skus)
	if *fixed {
		store = NewShardedStockMap(skus)
	}
	orders := make(chan Order, 4096)
	proc := &OrderProcessor{store: store, orders: orders, fixed: *fixed, noteBytes: *noteBytes, warehouse: *warehouse}
	load := &loadGenerator{
		store: store, orders: orders, skus: skus, perSec: *ordersPerSec,
		requestBytes: max(*requestBytes, 1), readsPerSec: *readsPerSec,
	}
	started := time.Now()

	http.HandleFunc("/version", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, *version)
	})
	http.HandleFunc("/stock", func(w http.ResponseWriter, r *http.Request) {
		sku, err := strconv.Atoi(r.URL.Query().Get("sku"))
		if err != nil || sku < 0 || sku >= skus {
			http.Error(w, "sku: an integer from 0 to 4095", http.StatusBadRequest)
			return
		}
		fmt.Fprintln(w, store.Get(sku))
	})
	http.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(stats{
			Version:         *version,
			Fixed:           *fixed,
			UptimeSeconds:   time.Since(started).Seconds(),
			OrdersProcessed: proc.ordersProcessed.Load(),
			RetainedItems:   proc.retainedItems.Load(),
			StockReads:      load.reads.Load(),
			ReadsShed:       load.shed.Load(),
			ReadP95Ms:       float64(load.readP95()) / float64(time.Millisecond),
			HeapInuseBytes:  ms.HeapInuse,
			NumGC:           ms.NumGC,
			LastGCPauseMs:   float64(ms.PauseNs[(ms.NumGC+255)%256]) / float64(time.Millisecond),
			Goroutines:      runtime.NumGoroutine(),
		})
	})

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	go proc.run(256)
	go load.submitOrders()
	for i := 0; i < *readers; i++ {
		lat := &latencies{}
		requests := make(chan time.Time, 4)
		load.readers = append(load.readers, lat)
		load.requests = append(load.requests, requests)
		go load.stockWorker(requests, lat)
	}
	go load.requestStock()
	fmt.Printf("listening on %s\n", ln.Addr())
	mode := "original (map-wide lock, batches kept)"
	if *fixed {
		mode = "fixed (sharded locks, batches released)"
	}
	fmt.Fprintf(os.Stderr, "inventory %s: %s, %d orders/s, %d stock reads/s, %d read workers\n",
		*version, mode, *ordersPerSec, *readsPerSec, *readers)
	if err := http.Serve(ln, nil); err != nil {
		log.Fatal(err)
	}
}
