// --count on strings: Handle(path) is called with a few paths a known number of times each,
// among them an empty one and one longer than the 64 bytes a key holds. Prints its counts.
package main

import (
	"flag"
	"fmt"
	"strings"
)

var total int

// Handle is the traced function: its string argument is words 0 (pointer) and 1 (length).
//
//go:noinline
func Handle(path string) int {
	total += len(path)
	return len(path)
}

func main() {
	rounds := flag.Int("rounds", 1, "rounds of calls")
	flag.Parse()
	long := "/" + strings.Repeat("x", 99)
	paths := []struct {
		path  string
		times int
	}{{"/api/users", 30}, {"/metrics", 20}, {"", 5}, {long, 7}}
	calls := 0
	for r := 0; r < *rounds; r++ {
		for _, p := range paths {
			for i := 0; i < p.times; i++ {
				// A fresh copy each time: the bytes are read, not the pointer.
				Handle(strings.Clone(p.path))
				calls++
			}
		}
	}
	fmt.Printf("Handle calls: %d\n", calls)
}
