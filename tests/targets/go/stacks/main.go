// Calls main.leaf along three known paths and prints how many times each ran, so a test can
// check probe's stacks against them: main.a -> main.b -> main.leaf (300 calls), main.c ->
// main.leaf (100), and main.d -> main.viaInline -> main.leaf (50), where the compiler inlines
// viaInline into d, so its frame exists only in the inline tree.
package main

import (
	"fmt"
	"os"
	"strconv"
)

var sink int

//go:noinline
func leaf(x int) int {
	return x*2 + 1
}

//go:noinline
func b(x int) int {
	return leaf(x) + 1
}

//go:noinline
func a(x int) int {
	return b(x) + 1
}

//go:noinline
func c(x int) int {
	return leaf(x) + 2
}

// viaInline is small: the compiler copies it into d.
func viaInline(x int) int {
	return leaf(x) + 3
}

//go:noinline
func d(x int) int {
	return viaInline(x) * 2
}

func main() {
	scale := 1
	if len(os.Args) > 1 {
		scale, _ = strconv.Atoi(os.Args[1])
	}
	for i := 0; i < 300*scale; i++ {
		sink += a(i)
	}
	for i := 0; i < 100*scale; i++ {
		sink += c(i)
	}
	for i := 0; i < 50*scale; i++ {
		sink += d(i)
	}
	fmt.Printf("a->b->leaf calls: %d\n", 300*scale)
	fmt.Printf("c->leaf calls: %d\n", 100*scale)
	fmt.Printf("d->viaInline->leaf calls: %d\n", 50*scale)
}
