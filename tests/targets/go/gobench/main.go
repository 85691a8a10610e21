// Benchmark workload for `cargo xtask bench`: calls the small function Work N times (or for
// a number of seconds) and reports its own loop's cost per call, timed with a monotonic clock.
//
// It also links fmt, regexp, encoding/json and net/http (used only by -big, never by the timed
// loop) so the binary has thousands of functions, as real Go services do: the scale rows attach
// probes to ~100 and ~1000 of them.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"time"
)

// Work calls another function, so it has a frame and the stack-check prologue that nearly
// every real Go function starts with (CMPQ SP, 16(R14); JBE morestack): what the entry probe
// of argdist and latency sits on.
//
//go:noinline
func Work(x int) int {
	return triple(x) + 1
}

//go:noinline
func triple(x int) int {
	return x * 3
}

// Inner and Outer make a path of two pointers: WorkPath(o) reads o.In.N, as `--arg o.In.N`
// does (the bench's row for paths into arguments).
type Inner struct {
	pad [3]int
	N   int
}

type Outer struct {
	name string
	In   *Inner
}

// WorkPath is Work with its number behind two pointers (o, then o.In).
//
//go:noinline
func WorkPath(o *Outer) int {
	return triple(o.In.N) + 1
}

// loopPath calls WorkPath n times, its number changing as Work's does.
func loopPath(start, n int) int {
	in := &Inner{}
	o := &Outer{name: "bench", In: in}
	sum := 0
	for i := start; i < start+n; i++ {
		in.N = i
		sum += WorkPath(o)
	}
	return sum
}

// loop calls Work n times and returns a sum, so the calls cannot be optimised away.
func loop(start, n int) int {
	sum := 0
	for i := start; i < start+n; i++ {
		sum += Work(i)
	}
	return sum
}

// big uses the large packages so the linker keeps them; the harness never passes -big.
func big() {
	re := regexp.MustCompile(`(\w+)@(\w+)\.com`)
	out, _ := json.Marshal(re.FindAllStringSubmatch("a@b.com c@d.com", -1))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(out)
	}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err == nil {
		resp.Body.Close()
	}
	fmt.Println(string(out))
}

func main() {
	calls := flag.Int("calls", 1000000, "number of calls to Work")
	seconds := flag.Float64("seconds", 0, "if > 0, call Work in batches for this long instead")
	useBig := flag.Bool("big", false, "exercise fmt, regexp, encoding/json and net/http once")
	path := flag.Bool("path", false, "call WorkPath (a pointer argument) instead of Work")
	flag.Parse()
	if *useBig {
		big()
		return
	}

	sum, done := 0, 0
	start := time.Now() // time.Since uses Go's monotonic clock reading
	if *seconds > 0 {
		for time.Since(start).Seconds() < *seconds {
			sum += loop(done, 1000)
			done += 1000
		}
	} else if *path {
		sum = loopPath(0, *calls)
		done = *calls
	} else {
		sum = loop(0, *calls)
		done = *calls
	}
	elapsed := time.Since(start)

	fmt.Printf("calls: %d\n", done)
	fmt.Printf("ns_per_call: %.1f\n", float64(elapsed.Nanoseconds())/float64(done))
	fmt.Fprintf(os.Stderr, "sum: %d\n", sum)
}
