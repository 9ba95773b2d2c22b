package main

// The background service every scenario runs: request-like allocation churn through a pool of workers, a
// bounded ring of recent responses, and a digest built and dropped now and then, so the heap saws up and
// down between profiles the way a real service's does. Nothing here grows over time.

import (
	"math/rand"
	"sync"
	"time"
)

type request struct {
	size  int
	kind  int
	delay time.Duration
}

type apiServer struct {
	requests chan request
	mu       sync.Mutex
	recent   [][]byte // the last responses, kept for a "recent activity" page (bounded)
	next     int
	digest   [][]byte // a large report held for a few steps, then dropped
	digestTT int
}

func newAPIServer(workers, recent int) *apiServer {
	s := &apiServer{requests: make(chan request, 512), recent: make([][]byte, recent)}
	for i := 0; i < workers; i++ {
		go s.orderWorker()
	}
	return s
}

func (s *apiServer) orderWorker() {
	for r := range s.requests {
		var resp []byte
		switch r.kind {
		case 0:
			resp = s.handleListOrders(r.size)
		case 1:
			resp = s.handleGetProduct(r.size)
		default:
			resp = s.handleSearch(r.size)
		}
		time.Sleep(r.delay)
		s.mu.Lock()
		s.recent[s.next%len(s.recent)] = resp
		s.next++
		s.mu.Unlock()
	}
}

//go:noinline
func (s *apiServer) handleListOrders(size int) []byte {
	rows := make([][]byte, 0, size/512+1)
	for n := 0; n < size; n += 512 {
		rows = append(rows, make([]byte, 512))
	}
	out := make([]byte, size)
	out[0] = byte(len(rows))
	return out[:64]
}

//go:noinline
func (s *apiServer) handleGetProduct(size int) []byte {
	out := make([]byte, size)
	out[len(out)-1] = 1
	return out
}

//go:noinline
func (s *apiServer) handleSearch(size int) []byte {
	hits := make(map[int][]byte, 16)
	for i := 0; i < 16; i++ {
		hits[i] = make([]byte, size/16+1)
	}
	return hits[0]
}

//go:noinline
func (s *apiServer) buildDailyDigest(bytes int) [][]byte {
	parts := make([][]byte, 0, bytes/(32<<10)+1)
	for n := 0; n < bytes; n += 32 << 10 {
		parts = append(parts, make([]byte, 32<<10))
	}
	return parts
}

// churn sends one step's requests and builds or drops the digest.
func (s *apiServer) churn(rng *rand.Rand, requests int, digestBytes int) {
	for i := 0; i < requests; i++ {
		// Mostly small responses, some large ones (a rough log-uniform mix of 256 B .. 64 KiB).
		size := 256 << uint(rng.Intn(9))
		size += rng.Intn(size)
		s.requests <- request{size: size, kind: rng.Intn(3), delay: time.Duration(200+rng.Intn(1800)) * time.Microsecond}
	}
	if s.digest != nil {
		s.digestTT--
		if s.digestTT <= 0 {
			s.digest = nil
		}
	} else if digestBytes > 0 && rng.Intn(30) == 0 {
		s.digest = s.buildDailyDigest(digestBytes/2 + rng.Intn(digestBytes))
		s.digestTT = 3 + rng.Intn(8)
	}
}
