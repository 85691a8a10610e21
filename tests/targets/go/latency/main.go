// Go latency scenarios, one per -mode; each prints how many times it called the traced function.
//   fib     Fib(25), recursive                                  -> "Fib calls: N"
//   grow    Grow: deep recursion with 1 KiB frames in fresh goroutines (stacks grow and move)
//   block   200 goroutines each calling Block, which sleeps 5 ms (goroutines migrate threads)
//   panic   Risky panics on every other call, recovered by its caller; the others sleep 1 ms
//   sleep   Sleep2ms 200 times
//   dive    Dive(9) recursing to Dive(0), which panics (recovered above them all) 100 times, then once
//           without the panic: 1,000 calls abandoned ten at a time, 10 returned
package main

import (
	"flag"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

var calls int64

//go:noinline
func Fib(n int) int {
	atomic.AddInt64(&calls, 1)
	if n < 2 {
		return n
	}
	return Fib(n-1) + Fib(n-2)
}

//go:noinline
func Grow(depth int) byte {
	atomic.AddInt64(&calls, 1)
	var frame [1024]byte
	frame[depth%1024] = byte(depth)
	if depth == 0 {
		return frame[0]
	}
	return Grow(depth-1) + frame[depth%1024]
}

//go:noinline
func Block() {
	atomic.AddInt64(&calls, 1)
	time.Sleep(5 * time.Millisecond)
}

var normal, panicked int64

//go:noinline
func Risky(fail bool) {
	atomic.AddInt64(&calls, 1)
	if fail {
		panicked++
		panic("risky")
	}
	normal++
	time.Sleep(time.Millisecond)
}

func callRisky(fail bool) {
	defer func() { recover() }()
	Risky(fail)
}

//go:noinline
func Dive(n int, fail bool) {
	atomic.AddInt64(&calls, 1)
	if n == 0 {
		if fail {
			panic("bottom")
		}
		return
	}
	Dive(n-1, fail)
}

func callDive(fail bool) {
	defer func() { recover() }()
	Dive(9, fail)
}

//go:noinline
func Sleep2ms() {
	atomic.AddInt64(&calls, 1)
	time.Sleep(2 * time.Millisecond)
}

func main() {
	mode := flag.String("mode", "fib", "fib|grow|block|panic|dive|sleep")
	flag.Parse()
	label := ""
	switch *mode {
	case "fib":
		label = "Fib"
		Fib(25)
	case "grow":
		label = "Grow"
		for i := 0; i < 20; i++ {
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { defer wg.Done(); Grow(200) }()
			wg.Wait()
		}
	case "block":
		label = "Block"
		var wg sync.WaitGroup
		for i := 0; i < 200; i++ {
			wg.Add(1)
			go func() { defer wg.Done(); Block() }()
		}
		wg.Wait()
	case "panic":
		label = "Risky"
		for i := 0; i < 2000; i++ {
			callRisky(i%2 == 0)
		}
		fmt.Printf("Risky normal: %d panicked: %d\n", normal, panicked)
	case "dive":
		label = "Dive"
		for i := 0; i < 100; i++ {
			callDive(true)
		}
		callDive(false)
	case "sleep":
		label = "Sleep2ms"
		for i := 0; i < 200; i++ {
			Sleep2ms()
		}
	}
	fmt.Printf("%s calls: %d\n", label, calls)
}
