// Values read as their declared types (tests/types.rs). Prints its call counts.
//
//	Neg(i) returns an int32 -1..-5, 10 calls
//	Pair(i) returns (0, int32 -1..-5): its second result is negative, 10 calls
//	Big(v) takes a uint64: 3 calls with 2^64-1, 2 with 7
package main

import (
	"fmt"
	"math"
)

var negCalls, pairCalls, bigCalls int

//go:noinline
func Neg(i int) int32 {
	negCalls++
	return -int32(i%5) - 1
}

//go:noinline
func Pair(i int) (int32, int32) {
	pairCalls++
	return 0, -int32(i%5) - 1
}

//go:noinline
func Big(v uint64) uint64 {
	bigCalls++
	return v / 2
}

func main() {
	var sink int64
	for i := 0; i < 10; i++ {
		sink += int64(Neg(i))
		a, b := Pair(i)
		sink += int64(a + b)
	}
	for i := 0; i < 5; i++ {
		v := uint64(7)
		if i < 3 {
			v = math.MaxUint64
		}
		sink += int64(Big(v))
	}
	fmt.Printf("Neg calls: %d\nPair calls: %d\nBig calls: %d\n", negCalls, pairCalls, bigCalls)
	_ = sink
}
