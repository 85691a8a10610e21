// A Go assembly function (ABI0: arguments on the stack) called with every value -500..=499
// once per round; prints its call count. With -clobbered N, instead calls Inner N times (through
// Outer) with R14 not holding the goroutine, and prints that count.
package main

import (
	"flag"
	"fmt"
)

// Scale returns 2*x; implemented in scale_amd64.s.
func Scale(x int64) int64

// Outer calls Inner with R14 set to 8, not to the goroutine; both in scale_amd64.s.
func Outer() int64

// Inner returns 1.
func Inner() int64

func main() {
	rounds := flag.Int("rounds", 1, "rounds of 1000 calls")
	clobbered := flag.Int("clobbered", 0, "calls of Inner with R14 clobbered (instead of Scale)")
	flag.Parse()
	if *clobbered > 0 {
		var inner int64
		for i := 0; i < *clobbered; i++ {
			inner += Outer()
		}
		fmt.Printf("Inner calls: %d\n", inner)
		return
	}
	var sum int64
	calls := 0
	for r := 0; r < *rounds; r++ {
		for v := int64(-500); v < 500; v++ {
			sum += Scale(v)
			calls++
		}
	}
	fmt.Printf("Scale calls: %d (sum %d)\n", calls, sum)
}
