// versionedleak writes a series of heap profiles from a service that may leak, for otel-leakproc's
// detection tests: no forced GC before a snapshot (the heap saws with request churn, as in production),
// Go's default heap sampling (runtime.MemProfileRate, one sample per 512 KiB allocated), and a leak of a
// chosen number of bytes per tick at retainAuditRecord. One tick stands for one minute of service time;
// the profiles' time_nanos are rewritten one minute apart afterwards (scripts/versioned_leak_series.py).
//
//	versionedleak -out DIR -ticks 60 -leak 153600 -object 512 -first 0
package main

import (
	"flag"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"runtime/pprof"
)

type auditLog struct{ records [][]byte }

var audit = &auditLog{}

// retainAuditRecord is the leak: every record is kept forever.
//
//go:noinline
func (a *auditLog) retainAuditRecord(size int, seq int) {
	buf := make([]byte, size)
	buf[0] = byte(seq)
	a.records = append(a.records, buf)
}

// handleRequest is request churn: buffers that live for a few requests, then become garbage.
//
//go:noinline
func handleRequest(rng *rand.Rand, live [][]byte, i int) {
	buf := make([]byte, 1024+rng.Intn(31*1024))
	buf[len(buf)-1] = byte(i)
	live[i%len(live)] = buf
}

func main() {
	out := flag.String("out", "", "folder for NNNN.pb.gz heap profiles")
	ticks := flag.Int("ticks", 60, "profiles to write (one per tick)")
	leak := flag.Int("leak", 150*1024, "bytes leaked per tick")
	object := flag.Int("object", 512, "size of one leaked object in bytes")
	first := flag.Int("first", 0, "number of the first profile file")
	requests := flag.Int("requests", 3000, "requests per tick (churn: about 16 KiB each)")
	seed := flag.Int64("seed", 1, "random seed of the churn")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "-out is required")
		os.Exit(2)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		panic(err)
	}
	rng := rand.New(rand.NewSource(*seed))
	live := make([][]byte, 400) // about 6 MiB of live request buffers at any time
	seq := 0
	carry := 0
	for tick := 0; tick < *ticks; tick++ {
		carry += *leak
		for carry >= *object && *leak > 0 {
			audit.retainAuditRecord(*object, seq)
			seq++
			carry -= *object
		}
		for i := 0; i < *requests; i++ {
			handleRequest(rng, live, tick**requests+i)
		}
		name := filepath.Join(*out, fmt.Sprintf("%04d.pb.gz", *first+tick))
		f, err := os.Create(name)
		if err != nil {
			panic(err)
		}
		if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
			panic(err)
		}
		if err := f.Close(); err != nil {
			panic(err)
		}
	}
}
