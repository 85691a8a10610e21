// A Go assembly function (ABI0: arguments on the stack) called with every value -500..=499
// once per round; prints its call count.
package main

import (
	"flag"
	"fmt"
)

// Scale returns 2*x; implemented in scale_amd64.s.
func Scale(x int64) int64

func main() {
	rounds := flag.Int("rounds", 1, "rounds of 1000 calls")
	flag.Parse()
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
