// Stress target for attaching and detaching at random moments (issue 12, item 6): main sleeps
// -sleep once while goroutines run a busy loop of checked calls, a 1 ms ticker and short
// sleeps, each checking that it lasted at least as long as asked. Prints its own counts; any
// early sleep or wrong result is counted and printed, and makes the exit status 1.
package main

import (
	"flag"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

var stop atomic.Bool

// Work is the busy loop's call: the caller checks every result.
//
//go:noinline
func Work(x int64) int64 {
	return x*3 + 1
}

// Nap sleeps d and reports how long it really took.
//
//go:noinline
func Nap(d time.Duration) time.Duration {
	start := time.Now()
	time.Sleep(d)
	return time.Since(start)
}

// spin calls Work as fast as it can, resting 1 ms after every 100,000 calls so a long stress
// run leaves the (shared) machine some CPU.
func spin(calls, wrong *int64) {
	for i := int64(0); !stop.Load(); i++ {
		if Work(i) != i*3+1 {
			*wrong++
		}
		*calls++
		if i%100_000 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
}

func napper(id int, naps, early *int64) {
	for n := 0; !stop.Load(); n++ {
		want := time.Duration(1+(n*7+id)%20) * time.Millisecond
		if got := Nap(want); got < want {
			atomic.AddInt64(early, 1)
			fmt.Printf("EARLY nap: asked %v, slept %v\n", want, got)
		}
		atomic.AddInt64(naps, 1)
	}
}

func ticks(count *int64) {
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for !stop.Load() {
		<-t.C
		*count++
	}
}

func main() {
	sleep := flag.Duration("sleep", 40*time.Second, "how long main sleeps")
	flag.Parse()
	var calls, wrong, tickCount, naps, early int64
	var wg sync.WaitGroup
	wg.Add(6)
	go func() { defer wg.Done(); spin(&calls, &wrong) }()
	go func() { defer wg.Done(); ticks(&tickCount) }()
	for id := 0; id < 4; id++ {
		id := id
		go func() { defer wg.Done(); napper(id, &naps, &early) }()
	}
	fmt.Println("ready")
	start := time.Now()
	time.Sleep(*sleep)
	slept := time.Since(start)
	stop.Store(true)
	wg.Wait()
	if slept < *sleep {
		early++
		fmt.Printf("EARLY main sleep: asked %v, slept %v\n", *sleep, slept)
	}
	fmt.Printf("main slept: %d ms of %d ms asked\n", slept.Milliseconds(), sleep.Milliseconds())
	fmt.Printf("Work calls: %d wrong: %d\n", calls, wrong)
	fmt.Printf("Nap calls: %d early: %d\n", naps, early)
	fmt.Printf("ticks: %d\n", tickCount)
	if early > 0 || wrong > 0 {
		os.Exit(1)
	}
}
