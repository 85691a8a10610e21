// The seed's ToString program, made deterministic: each round converts every value
// -500..=499 exactly once, in a fixed shuffled order, and the program prints its call count.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"time"
)

//go:noinline
func ToString(number int) string {
	return fmt.Sprintf("%d", number)
}

// permutation returns -500..=499 shuffled by a fixed-seed LCG (same order on every run).
func permutation() []int {
	values := make([]int, 1000)
	for i := range values {
		values[i] = i - 500
	}
	state := uint64(42)
	for i := len(values) - 1; i > 0; i-- {
		state = state*6364136223846793005 + 1442695040888963407
		j := int((state >> 33) % uint64(i+1))
		values[i], values[j] = values[j], values[i]
	}
	return values
}

func main() {
	rounds := flag.Int("rounds", 1, "rounds of 1000 calls")
	wait := flag.Bool("wait", false, "wait for a line on stdin before calling")
	pause := flag.Int("pause-ms", 0, "sleep this long after each round (runs last as long, however cheap a call)")
	flag.Parse()
	if *wait {
		bufio.NewReader(os.Stdin).ReadString('\n')
	}
	var buf bytes.Buffer
	calls := 0
	for r := 0; r < *rounds; r++ {
		for _, value := range permutation() {
			buf.WriteString(ToString(value))
			calls++
		}
		buf.Reset()
		time.Sleep(time.Duration(*pause) * time.Millisecond)
	}
	fmt.Printf("ToString calls: %d\n", calls)
}
