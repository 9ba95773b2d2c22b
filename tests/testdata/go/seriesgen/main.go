// seriesgen writes labelled series of real Go runtime profiles for otel-leakproc's detectors (issue 14):
// one process per scenario (two for a deploy), each running a background service plus one labelled
// behaviour, compressed in time (one simulated minute per -tick-wall of wall time), writing a heap and a
// goroutine profile (and mutex and block profiles where contention is the point) once a minute with
// runtime/pprof, no forced GC. Each profile's time_nanos is rewritten to BASE + N minutes and it carries a
// comment "service.version=V". labels.json gets the truth and the exact retained bytes per profile.
//
//	go run . -out ../../series                    # every scenario
//	go run . -out ../../series -only a,b -jobs 1   # some of them (labels.json is merged)
//	go run . -out ../../../../build/long-series -only a,b -profiles 240   # longer one-process series
//
// -profiles N stretches every one-process scenario to profiles 0..N-1 (the workloads keep their per-minute
// behaviour: a sawtooth keeps flushing, a leak keeps leaking); the committed series are made with the default
// (60). Scenarios with a restart (two segments) keep their fixed length and are refused with -profiles.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	baseSeconds = 1_790_000_000 // the shared corpus's convention: profile N at BASE + N * 60 s
	tickSeconds = 60
)

type tickTruth struct {
	Tick       int    `json:"tick"`
	Version    string `json:"version"`
	TruthBytes int64  `json:"truth"`
	HeapAlloc  uint64 `json:"heap_alloc"`
	HeapInuse  uint64 `json:"heap_inuse"`
	NumGC      uint32 `json:"num_gc"`
	Goroutines int    `json:"goroutines"`
}

func main() {
	out := flag.String("out", "", "output folder (one subfolder per scenario, labels.json)")
	only := flag.String("only", "", "comma-separated scenario names (default: all)")
	jobs := flag.Int("jobs", 2, "scenarios generated at once")
	tickWall := flag.Duration("tick-wall", time.Second, "wall time of one simulated minute")
	child := flag.String("child", "", "internal: run one segment of this scenario")
	seg := flag.Int("segment", 0, "internal: segment index")
	profiles := flag.Int("profiles", defaultProfiles, "profiles per one-process scenario (default: the committed length)")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "seriesgen: -out is required")
		os.Exit(2)
	}
	if err := stretch(*profiles, *only); err != nil {
		fmt.Fprintln(os.Stderr, "seriesgen:", err)
		os.Exit(2)
	}
	if *child != "" {
		if err := runSegment(*child, *seg, *out, *tickWall); err != nil {
			fmt.Fprintln(os.Stderr, "seriesgen:", err)
			os.Exit(1)
		}
		return
	}
	if err := generate(*out, *only, *jobs, *tickWall); err != nil {
		fmt.Fprintln(os.Stderr, "seriesgen:", err)
		os.Exit(1)
	}
}

// stretch sets the last profile of every one-process scenario (of those chosen by only, or all) to n-1.
func stretch(n int, only string) error {
	if n == defaultProfiles {
		return nil
	}
	if n < 2 || n > 10000 {
		return fmt.Errorf("-profiles %d: want 2..10000", n)
	}
	chosen := map[string]bool{}
	for _, name := range strings.Split(only, ",") {
		if name = strings.TrimSpace(name); name != "" {
			chosen[name] = true
		}
	}
	for _, sc := range scenarios {
		if len(chosen) > 0 && !chosen[sc.name] {
			continue
		}
		if len(sc.segments) != 1 {
			if len(chosen) > 0 {
				return fmt.Errorf("-profiles: scenario %q has a restart and a fixed length", sc.name)
			}
			continue
		}
		sc.segments[0].last = n - 1
	}
	return nil
}

// ---------------------------------------------------------------- parent: one child process per segment

func generate(out, only string, jobs int, tickWall time.Duration) error {
	var chosen []*scenario
	if only == "" {
		chosen = scenarios
	} else {
		for _, name := range strings.Split(only, ",") {
			s := findScenario(strings.TrimSpace(name))
			if s == nil {
				return fmt.Errorf("unknown scenario %q", name)
			}
			chosen = append(chosen, s)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	results := map[string]map[string]any{}
	var mu sync.Mutex
	var firstErr error
	sem := make(chan struct{}, max(1, jobs))
	var wg sync.WaitGroup
	for _, sc := range chosen {
		wg.Add(1)
		go func(sc *scenario) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			label, err := runScenario(self, sc, out, tickWall)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = fmt.Errorf("%s: %w", sc.name, err)
			}
			results[sc.name] = label
		}(sc)
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return writeLabels(filepath.Join(out, "labels.json"), results)
}

func runScenario(self string, sc *scenario, out string, tickWall time.Duration) (map[string]any, error) {
	if err := os.RemoveAll(filepath.Join(out, sc.name)); err != nil {
		return nil, err
	}
	started := time.Now()
	var truth []tickTruth
	for i := range sc.segments {
		cmd := exec.Command(self, "-child", sc.name, "-segment", strconv.Itoa(i), "-out", out, "-tick-wall", tickWall.String(),
			"-profiles", strconv.Itoa(sc.segments[len(sc.segments)-1].last+1))
		env := os.Environ()
		if sc.memLimit > 0 {
			env = append(env, fmt.Sprintf("GOMEMLIMIT=%dMiB", sc.memLimit/MiB))
		}
		cmd.Env = append(env, fmt.Sprintf("GOGC=%d", sc.gogc))
		cmd.Stderr = os.Stderr
		stdout, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("segment %d: %w", i, err)
		}
		sc := bufio.NewScanner(bytes.NewReader(stdout))
		for sc.Scan() {
			var t tickTruth
			if err := json.Unmarshal(sc.Bytes(), &t); err != nil {
				return nil, err
			}
			truth = append(truth, t)
		}
	}
	fmt.Fprintf(os.Stderr, "%s: %d profiles in %s\n", sc.name, len(truth), time.Since(started).Round(time.Second))
	return buildLabel(sc, truth), nil
}

func buildLabel(sc *scenario, truth []tickTruth) map[string]any {
	label := map[string]any{
		"set": sc.set, "seed": sc.seed, "gogc": sc.gogc, "gomemlimit_bytes": nil,
		"tick_seconds": tickSeconds, "ticks": len(truth), "first_tick": 0,
		"forced_gc_before_heap_snapshot": false, "go_version": runtime.Version(),
		"goroutine_leak": false, "goroutine_leak_function": nil, "contention": false, "contention_function": nil,
		"restart_tick": nil,
	}
	if sc.memLimit > 0 {
		label["gomemlimit_bytes"] = sc.memLimit
	}
	for k, v := range sc.label {
		label[k] = v
	}
	var versions []map[string]any
	for _, s := range sc.segments {
		versions = append(versions, map[string]any{"version": s.version, "first_tick": s.first, "last_tick": s.last})
	}
	label["versions"] = versions
	gt := map[string]any{}
	series := func(f func(t tickTruth) any) []any {
		out := make([]any, len(truth))
		for i, t := range truth {
			out[i] = f(t)
		}
		return out
	}
	gt["truth_per_tick"] = series(func(t tickTruth) any { return t.TruthBytes })
	gt["truth_meaning"] = truthMeaning(sc)
	gt["heap_alloc_bytes_per_tick"] = series(func(t tickTruth) any { return t.HeapAlloc })
	gt["num_gc_per_tick"] = series(func(t tickTruth) any { return t.NumGC })
	gt["goroutines_per_tick"] = series(func(t tickTruth) any { return t.Goroutines })
	label["observed"] = map[string]any{"ground_truth": gt}
	return label
}

func truthMeaning(sc *scenario) string {
	switch {
	case sc.label["goroutine_leak"] == true:
		return "goroutines leaked so far (exact)"
	case sc.label["contention"] == true:
		return "none (contention series)"
	case sc.label["heap_leak"] == true:
		return "payload bytes retained by the leak so far (exact, unsampled; slice/map overhead not counted)"
	default:
		return "payload bytes held by the bounded structure now (exact, unsampled)"
	}
}

func writeLabels(path string, results map[string]map[string]any) error {
	all := map[string]map[string]any{}
	if data, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(data, &all); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	for k, v := range results {
		all[k] = v
	}
	data, err := json.MarshalIndent(all, "", " ") // encoding/json sorts map keys
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

// ---------------------------------------------------------------- child: one process of one scenario

func runSegment(name string, index int, out string, tickWall time.Duration) error {
	sc := findScenario(name)
	if sc == nil || index < 0 || index >= len(sc.segments) {
		return fmt.Errorf("no segment %d of scenario %q", index, name)
	}
	seg := sc.segments[index]
	// GOGC and GOMEMLIMIT come from the environment the parent set (as a deployment would set them).
	if sc.contention {
		runtime.SetMutexProfileFraction(5)
		runtime.SetBlockProfileRate(10000)
	}
	rng := rand.New(rand.NewSource(sc.seed*100 + int64(index)))
	svc := newAPIServer(8, 256)
	work := sc.make(index, rand.New(rand.NewSource(sc.seed*100+50+int64(index))))
	kinds := []string{"heap", "goroutine"}
	if sc.contention {
		kinds = append(kinds, "mutex", "block")
	}
	for _, k := range kinds {
		if err := os.MkdirAll(filepath.Join(out, sc.name, k), 0o755); err != nil {
			return err
		}
	}
	stepWall := tickWall / stepsPerTick
	clock := time.Now()
	enc := json.NewEncoder(os.Stdout)
	for tick := seg.first - seg.warmup; tick <= seg.last; tick++ {
		for step := 0; step < stepsPerTick; step++ {
			svc.churn(rng, sc.requests, sc.digest)
			work.step(tick, step)
			clock = clock.Add(stepWall)
			time.Sleep(time.Until(clock))
		}
		if tick < seg.first {
			continue
		}
		for _, k := range kinds {
			if err := snapshot(filepath.Join(out, sc.name, k, fmt.Sprintf("%04d.pb.gz", tick)), k, tick, seg.version); err != nil {
				return err
			}
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		if err := enc.Encode(tickTruth{
			Tick: tick, Version: seg.version, TruthBytes: work.truthBytes(), HeapAlloc: ms.HeapAlloc,
			HeapInuse: ms.HeapInuse, NumGC: ms.NumGC, Goroutines: runtime.NumGoroutine(),
		}); err != nil {
			return err
		}
	}
	return nil
}

func snapshot(path, kind string, tick int, version string) error {
	var buf bytes.Buffer
	if err := pprof.Lookup(kind).WriteTo(&buf, 0); err != nil {
		return err
	}
	when := (int64(baseSeconds) + int64(tick)*tickSeconds) * int64(time.Second)
	patched, err := patchProfile(buf.Bytes(), when, "service.version="+version)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return os.WriteFile(path, patched, 0o644)
}
