// healthy is the well-behaved twin of leaky, for otel-leakproc's scrape tests: it allocates and frees at a
// steady rate (a bounded ring of buffers), keeps a fixed pool of worker goroutines, and serves
// net/http/pprof on a loopback port. It prints "listening on ADDR" when ready.
package main

import (
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof"
	"runtime"
	"sync"
	"time"
)

const ringSize = 64

type ring struct {
	mu   sync.Mutex
	next int
	bufs [ringSize][]byte
}

// store replaces the oldest buffer: memory in use stays flat.
//
//go:noinline
func (r *ring) store(id int) {
	buf := make([]byte, 32<<10)
	for i := range buf {
		buf[i] = byte(id + i)
	}
	r.mu.Lock()
	r.bufs[r.next] = buf
	r.next = (r.next + 1) % ringSize
	r.mu.Unlock()
}

func main() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	r := &ring{}
	jobs := make(chan int)
	for w := 0; w < 8; w++ {
		go func() {
			for id := range jobs {
				r.store(id)
			}
		}()
	}
	go func() {
		id := 0
		for range time.Tick(20 * time.Millisecond) {
			id++
			jobs <- id
		}
	}()
	// The tests compress minutes into seconds. A heap profile reflects the last completed GC, and a heap
	// this small is collected only every few seconds, so without this the profile climbs for the first
	// ten seconds while the ring fills between collections; a real service settles within its warm-up.
	go func() {
		for range time.Tick(250 * time.Millisecond) {
			runtime.GC()
		}
	}()
	fmt.Printf("listening on %s\n", ln.Addr())
	if err := http.Serve(ln, nil); err != nil {
		panic(err)
	}
}
