// Ground truth for latency: functions of known cost (about 0.1, 1, 10 and 100 us of pure
// computation, and Outer10 with ten Work1us calls inside) that the program times itself, call
// by call, from the caller. Untraced, its
// medians are what a tracer should report; traced, probe's corrected numbers are compared
// with them. Prints, per function:
//   Work1us calls: 2000
//   Work1us self-timed median_ns: 1012 mean_ns: 1040
package main

import (
	"flag"
	"fmt"
	"os"
	"sort"
	"time"
)

var sink uint64

// spin does n rounds of a xorshift: about 2 ns each, never optimised away. Not inlined, so
// the Work functions have a frame and the stack-check prologue of real Go functions.
//
//go:noinline
func spin(n int) uint64 {
	x := uint64(n) | 1
	for i := 0; i < n; i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
	}
	return x
}

//go:noinline
func Work01us(n int) uint64 { return spin(n) }

//go:noinline
func Work1us(n int) uint64 { return spin(n) }

//go:noinline
func Work10us(n int) uint64 { return spin(n) }

//go:noinline
func Work100us(n int) uint64 { return spin(n) }

// Outer10 calls Work1us ten times: traced together, its own time must not include the probes
// of the ten calls inside it.
//
//go:noinline
func Outer10(n int) uint64 {
	var x uint64
	for i := 0; i < 10; i++ {
		x += Work1us(n)
	}
	return x
}

type work struct {
	name  string
	fn    func(int) uint64
	iters int
}

func main() {
	calls := flag.Int("calls", 2000, "calls of each function (Work100us gets a tenth)")
	flag.Parse()
	works := []work{
		{"Work01us", Work01us, 40},
		{"Work1us", Work1us, 450},
		{"Work10us", Work10us, 4500},
		{"Work100us", Work100us, 45000},
		{"Outer10", Outer10, 450},
	}
	for _, w := range works {
		n := *calls
		if w.iters >= 45000 {
			n = *calls / 10
		}
		times := make([]int64, n)
		for i := range times {
			start := time.Now()
			sink += w.fn(w.iters)
			times[i] = int64(time.Since(start))
		}
		if w.name == "Outer10" {
			fmt.Printf("Work1us total calls: %d\n", 10*n+*calls) // its own round, and ten per Outer10
		}
		sort.Slice(times, func(a, b int) bool { return times[a] < times[b] })
		var sum int64
		for _, t := range times {
			sum += t
		}
		fmt.Printf("%s calls: %d\n", w.name, n)
		fmt.Printf("%s self-timed median_ns: %d mean_ns: %d\n", w.name, times[n/2], sum/int64(n))
	}
	if sink == 42 {
		fmt.Fprintln(os.Stderr, "unlikely")
	}
}
