// snapshot leaks in steps and is idle in between, so that a profile fetched twice in a row, once as
// protobuf and once as ?debug=1 text, describes the same moment: every GET /step retains memory, leaks
// goroutines blocked on channels nobody sends to, and makes workers contend on one mutex; the garbage
// collector runs only at the end of a step (GOGC is off) and the mutex and block profiles record only
// during a step. It serves net/http/pprof on a loopback port and prints "listening on ADDR" when ready.
package main

import (
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof"
	"runtime"
	"runtime/debug"
	"sync"
	"time"
)

var retained [][]byte

// retainReports is the leak: every step keeps sixteen more 48 KiB buffers for good.
//
//go:noinline
func retainReports() {
	for i := 0; i < 16; i++ {
		buf := make([]byte, 48<<10)
		buf[0] = byte(i)
		retained = append(retained, buf)
	}
}

// awaitAck leaks: nobody ever sends on ack.
//
//go:noinline
func awaitAck(ack chan int) {
	<-ack
}

var ledger sync.Mutex

// postEntry holds the ledger lock while it sleeps: the other workers queue behind it.
//
//go:noinline
func postEntry() {
	ledger.Lock()
	time.Sleep(100 * time.Microsecond)
	ledger.Unlock()
}

var stepMu sync.Mutex

func step(w http.ResponseWriter, _ *http.Request) {
	stepMu.Lock()
	defer stepMu.Unlock()
	runtime.SetMutexProfileFraction(1)
	runtime.SetBlockProfileRate(1)
	retainReports()
	for i := 0; i < 3; i++ {
		go awaitAck(make(chan int))
	}
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 10; j++ {
				postEntry()
			}
		}()
	}
	wg.Wait()
	runtime.SetMutexProfileFraction(0)
	runtime.SetBlockProfileRate(0)
	// The heap profile shows the heap as of the last completed collection: two make it this moment's.
	runtime.GC()
	runtime.GC()
	fmt.Fprintln(w, "ok")
}

func main() {
	// One allocation in 64 KiB is sampled (Go's default is 512 KiB): a step's leak is always seen, and the
	// values are still scaled by the sampling probability (1.9x for a 48 KiB buffer).
	runtime.MemProfileRate = 64 << 10
	debug.SetGCPercent(-1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	http.HandleFunc("/step", step)
	fmt.Printf("listening on %s\n", ln.Addr())
	if err := http.Serve(ln, nil); err != nil {
		panic(err)
	}
}
