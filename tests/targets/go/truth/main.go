// Ground truth for latency: functions of known cost (about 0.1, 1, 10 and 100 us of pure
// computation, and Outer10 with ten Work1us calls inside; leaf functions of about 0.1, 0.5, 4
// and 40 us without a stack check, Tiny, next to nothing, and Deep recursion) that the program
// times itself, call
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

// Leaf functions: the work inline, no call, so no frame and no stack-check prologue (Go
// starts them `XORL AX, AX; JMP` or with a plain `MOVQ`): the entry probe cannot sit on a stack
// check's JBE. About 0.1, 0.5, 4 and 40 us.
//
//go:noinline
func Leaf01us(n int) uint64 {
	x := uint64(n) | 1
	for i := 0; i < n; i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
	}
	return x
}

//go:noinline
func Leaf05us(n int) uint64 {
	x := uint64(n) | 1
	for i := 0; i < n; i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
	}
	return x
}

//go:noinline
func Leaf4us(n int) uint64 {
	x := uint64(n) | 1
	for i := 0; i < n; i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
	}
	return x
}

//go:noinline
func Leaf40us(n int) uint64 {
	x := uint64(n) | 1
	for i := 0; i < n; i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
	}
	return x
}

// Tiny does next to nothing (`LEAQ 1(AX)(AX*2), AX; RET`): no instruction before its RET
// that the kernel emulates, so its entry probe is single-stepped whatever probe chooses.
//
//go:noinline
func Tiny(n int) uint64 { return uint64(n*3 + 1) }

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

//go:noinline
func twinLeaf01us(n int) uint64 {
	x := uint64(n) | 1
	for i := 0; i < n; i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
	}
	return x
}

//go:noinline
func twinLeaf05us(n int) uint64 {
	x := uint64(n) | 1
	for i := 0; i < n; i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
	}
	return x
}

//go:noinline
func twinLeaf4us(n int) uint64 {
	x := uint64(n) | 1
	for i := 0; i < n; i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
	}
	return x
}

//go:noinline
func twinLeaf40us(n int) uint64 {
	x := uint64(n) | 1
	for i := 0; i < n; i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
	}
	return x
}

//go:noinline
func twinTiny(n int) uint64 { return uint64(n*3 + 1) }

// Deep recursion: Deep(n) calls itself n times; every level times itself (from its first
// statement to its last), so the truth of every call a tracer sees is known, inner levels too.
// Its twin does the same. Deep(255) is 256 nested calls, as many as probe follows per
// goroutine; Deeper (Deep(300)) nests 45 more, which probe counts as too_deep.
var deepTimes, twinDeepTimes []int64

//go:noinline
func Deep(n int) uint64 {
	start := time.Now()
	var r uint64
	if n == 0 {
		r = spin(40)
	} else {
		r = Deep(n-1) + 1
	}
	deepTimes = append(deepTimes, int64(time.Since(start)))
	return r
}

//go:noinline
func twinDeep(n int) uint64 {
	start := time.Now()
	var r uint64
	if n == 0 {
		r = spin(40)
	} else {
		r = twinDeep(n-1) + 1
	}
	twinDeepTimes = append(twinDeepTimes, int64(time.Since(start)))
	return r
}

// deep runs name's recursion `calls` times at `levels` (with its twin before each) and prints
// the times of the outermost 256 levels of each, those probe times.
func deep(name string, calls, levels int, twin bool) {
	var own, twins []int64
	outer := func(times []int64) []int64 { // a call appends its levels innermost first
		if len(times) > 256 {
			return times[len(times)-256:]
		}
		return times
	}
	for i := 0; i < calls; i++ {
		if twin {
			twinDeepTimes = twinDeepTimes[:0]
			sink += twinDeep(levels)
			twins = append(twins, outer(twinDeepTimes)...)
		}
		deepTimes = deepTimes[:0]
		sink += Deep(levels)
		own = append(own, outer(deepTimes)...)
	}
	fmt.Printf("%s calls: %d\n", name, calls*(levels+1))
	printStats(name, "self-timed", own)
	if twin {
		printStats(name, "twin", twins)
	}
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
	deeper := flag.Bool("deeper", false, "also recurse 300 deep (Deeper), past the 256 levels probe follows")
	flag.Parse()
	works := []work{
		{"Work01us", Work01us, twinWork01us, 40},
		{"Work1us", Work1us, twinWork1us, 450},
		{"Work10us", Work10us, twinWork10us, 4500},
		{"Work100us", Work100us, twinWork100us, 45000},
		{"Outer10", Outer10, twinOuter10, 450},
		{"Leaf01us", Leaf01us, twinLeaf01us, 40},
		{"Leaf05us", Leaf05us, twinLeaf05us, 220},
		{"Leaf4us", Leaf4us, twinLeaf4us, 1800},
		{"Leaf40us", Leaf40us, twinLeaf40us, 18000},
		{"Tiny", Tiny, twinTiny, 0},
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
	deep("Deep", *calls/20, 255, *twin)
	if *deeper {
		deep("Deeper", *calls/20, 300, *twin)
	}
	if sink == 42 {
		fmt.Fprintln(os.Stderr, "unlikely")
	}
}
