// leaky is a small service with three problems, for otel-leakproc's end-to-end tests: it leaks memory into
// a global cache, leaks goroutines blocked on channels nobody will ever send to, and makes workers fight
// over one mutex. It serves net/http/pprof on a loopback port and prints "listening on ADDR" when ready.
package main

import (
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"
)

type sessionCache struct {
	mu      sync.Mutex
	entries map[int][]byte
}

var cache = &sessionCache{entries: map[int][]byte{}}

// rememberSession is the leak: entries are added and never evicted.
//
//go:noinline
func (c *sessionCache) rememberSession(id int) {
	buf := make([]byte, 32<<10)
	for i := range buf {
		buf[i] = byte(id + i)
	}
	c.mu.Lock()
	c.entries[id] = buf
	c.mu.Unlock()
}

// waitForReply leaks: the reply channel is dropped by the caller, so this goroutine blocks forever.
//
//go:noinline
func waitForReply(reply chan int) {
	<-reply
}

var inventory struct {
	mu    sync.Mutex
	stock map[int]int
}

// deductBatch holds the lock for the whole batch: every worker queues behind it.
//
//go:noinline
func deductBatch(n int) {
	inventory.mu.Lock()
	for i := 0; i < n; i++ {
		inventory.stock[i%64]--
	}
	time.Sleep(2 * time.Millisecond)
	inventory.mu.Unlock()
}

func main() {
	runtime.SetMutexProfileFraction(1)
	runtime.SetBlockProfileRate(1)
	inventory.stock = map[int]int{}
	interval := 50 * time.Millisecond
	if v, err := strconv.Atoi(os.Getenv("LEAK_INTERVAL_MS")); err == nil && v > 0 {
		interval = time.Duration(v) * time.Millisecond
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go func() {
		id := 0
		for range time.Tick(interval) {
			id++
			cache.rememberSession(id)
			if id%2 == 0 {
				go waitForReply(make(chan int))
			}
		}
	}()
	// Contention grows: a new worker joins every second.
	go func() {
		for range time.Tick(time.Second) {
			go func() {
				for {
					deductBatch(100)
				}
			}()
		}
	}()
	fmt.Printf("listening on %s\n", ln.Addr())
	if err := http.Serve(ln, nil); err != nil {
		panic(err)
	}
}
