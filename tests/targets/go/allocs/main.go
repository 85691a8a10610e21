// Allocates on the heap along two known stacks with Go's heap profile recording every
// allocation (runtime.MemProfileRate = 1), then writes that profile to the file named by its
// argument: the runtime's own exact count per stack, to check probe's against.
package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
)

func init() {
	runtime.MemProfileRate = 1
}

type obj struct{ a, b, c, d int64 }

// Kept in fixed arrays (not on the heap themselves), so the allocations escape.
var keepA [300][]byte
var keepB [200]*obj

//go:noinline
func allocA(n int) []byte {
	return make([]byte, n)
}

//go:noinline
func allocB() *obj {
	return new(obj)
}

func main() {
	for i := range keepA {
		keepA[i] = allocA(100 + i%3)
	}
	for i := range keepB {
		keepB[i] = allocB()
	}
	// The profile holds the allocations of completed GC cycles.
	runtime.GC()
	runtime.GC()
	f, err := os.Create(os.Args[1])
	if err != nil {
		panic(err)
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		panic(err)
	}
	f.Close()
	fmt.Printf("allocA calls: %d\nallocB calls: %d\n", len(keepA), len(keepB))
}
