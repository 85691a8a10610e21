// Ground truth for latency: functions of known cost (about 0.1, 1, 10 and 100 us of pure
// computation, and Outer10 with ten Work1us calls inside) that the program times itself, call
// by call, from the caller. Untraced, its
// medians are what a tracer should report; traced, probe's corrected numbers are compared
// with them. Prints, per function:
//
//	Work1us calls: 2000
//	Work1us self-timed median_ns: 1012 mean_ns: 1040
//
// With -twin, each call is preceded by one of the function's untraced twin (the same code
// under another name), timed the same way and printed as
//
//	Work1us twin median_ns: 1010 mean_ns: 1036
//
// so a traced run carries its own truth, measured at the same moments as the traced calls:
// on a busy machine an untraced run a second earlier can be twice as slow or fast.
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

// The twins: the same work under names nobody traces.
//
//go:noinline
func twinWork01us(n int) uint64 { return spin(n) }

//go:noinline
func twinWork1us(n int) uint64 { return spin(n) }

//go:noinline
func twinWork10us(n int) uint64 { return spin(n) }

//go:noinline
func twinWork100us(n int) uint64 { return spin(n) }

//go:noinline
func twinOuter10(n int) uint64 {
	var x uint64
	for i := 0; i < 10; i++ {
		x += twinWork1us(n)
	}
	return x
}

type work struct {
	name  string
	fn    func(int) uint64
	twin  func(int) uint64
	iters int
}

// timed returns how long fn(iters) took, from the caller.
func timed(fn func(int) uint64, iters int) int64 {
	start := time.Now()
	sink += fn(iters)
	return int64(time.Since(start))
}

// printStats prints `NAME LABEL median_ns: N mean_ns: M` of times (sorting them).
func printStats(name, label string, times []int64) {
	sort.Slice(times, func(a, b int) bool { return times[a] < times[b] })
	var sum int64
	for _, t := range times {
		sum += t
	}
	n := len(times)
	fmt.Printf("%s %s median_ns: %d mean_ns: %d\n", name, label, times[n/2], sum/int64(n))
}

func main() {
	calls := flag.Int("calls", 2000, "calls of each function (Work100us gets a tenth)")
	twin := flag.Bool("twin", false, "call an untraced twin before each call and print its times too")
	flag.Parse()
	works := []work{
		{"Work01us", Work01us, twinWork01us, 40},
		{"Work1us", Work1us, twinWork1us, 450},
		{"Work10us", Work10us, twinWork10us, 4500},
		{"Work100us", Work100us, twinWork100us, 45000},
		{"Outer10", Outer10, twinOuter10, 450},
	}
	for _, w := range works {
		n := *calls
		if w.iters >= 45000 {
			n = *calls / 10
		}
		times, twins := make([]int64, n), make([]int64, n)
		for i := range times {
			if *twin {
				twins[i] = timed(w.twin, w.iters)
			}
			times[i] = timed(w.fn, w.iters)
		}
		if w.name == "Outer10" {
			fmt.Printf("Work1us total calls: %d\n", 10*n+*calls) // its own round, and ten per Outer10
		}
		fmt.Printf("%s calls: %d\n", w.name, n)
		printStats(w.name, "self-timed", times)
		if *twin {
			printStats(w.name, "twin", twins)
		}
	}
	if sink == 42 {
		fmt.Fprintln(os.Stderr, "unlikely")
	}
}
