// Calls main.small 2n times: n times where the compiler inlines it (a direct call of a small
// function), and n times through a func value it cannot inline. Prints its own count, so a
// test can check what probe saw against what ran.
package main

import (
	"fmt"
	"os"
	"strconv"
)

// small is short enough for the compiler to inline at every direct call.
func small(x int) int {
	return x*3 + 1
}

// through keeps a func value the compiler cannot see through (a package variable could be
// reassigned), so each call through it is a real call of small.
var through = small

var sink int

func main() {
	n := 1000
	if len(os.Args) > 1 {
		n, _ = strconv.Atoi(os.Args[1])
	}
	for i := 0; i < n; i++ {
		sink += small(i)
	}
	for i := 0; i < n; i++ {
		sink += through(i)
	}
	fmt.Printf("small calls: %d (inlined %d, real %d)\n", 2*n, n, n)
}
