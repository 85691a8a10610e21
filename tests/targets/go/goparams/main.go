// Functions whose parameters are of many kinds, for `--arg NAME` and `--arg N` as declared.
// Each round calls each function once for every v in -500..=499, with values the tests
// recompute: Handle's path has length (v+500)%37, its sizes length (v+500)%11, its code is
// int32(v)*1000, its tag uint8(v). Prints its call counts.
package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

type Server struct{ handled int }

type Point struct{ X, Y int }

//go:noinline
func (s *Server) Handle(path string, sizes []int, code int32, ratio float64, ok bool, tag uint8) int {
	s.handled++
	if ok {
		return len(path) + len(sizes) + int(code) + int(ratio) + int(tag)
	}
	return 0
}

// Eleven integers: nine fit in the integer registers, k and l go to the stack.
//
//go:noinline
func Many(a, b, c, d, e, f, g, h, i, k, l int) int {
	return a + b + c + d + e + f + g + h + i + k + l
}

// A struct is assigned field by field (p.X, p.Y in two registers); an array of 3 goes to
// the stack; n after them takes the next free register.
//
//go:noinline
func Mixed(p Point, arr [3]int, n int16) (string, int) {
	return strconv.Itoa(p.X + arr[0]), int(n) + p.Y + arr[2]
}

//go:noinline
func Describe(v interface{}, n int) int {
	if v == nil {
		return n
	}
	return n + 1
}

// Eight integers leave one register: s (two words) goes to the stack, and t still takes R11.
//
//go:noinline
func Spill(a, b, c, d, e, f, g, h int, s string, t int) int {
	return a + b + c + d + e + f + g + h + len(s) + t
}

// The blank parameter takes RAX, though Go before 1.23 leaves it out of the DWARF.
//
//go:noinline
func Blank(_ int, x int) int {
	return x
}

func main() {
	rounds := 1
	if len(os.Args) > 1 {
		rounds, _ = strconv.Atoi(os.Args[1])
	}
	s := &Server{}
	sizes := make([]int, 16)
	calls, sink := 0, 0
	for r := 0; r < rounds; r++ {
		for v := -500; v < 500; v++ {
			path := strings.Repeat("/", (v+500)%37)
			sink += s.Handle(path, sizes[:(v+500)%11], int32(v)*1000, float64(v)/2, v%2 == 0, uint8(v))
			sink += Many(v, 1, 2, 3, 4, 5, 6, 7, 8, 2*v, 3*v)
			str, n := Mixed(Point{v, -v}, [3]int{v, v, v}, int16(v)*60)
			sink += len(str) + n
			sink += Describe(v, v)
			sink += Blank(v, 5*v)
			sink += Spill(v, 1, 2, 3, 4, 5, 6, 7, path, 9*v)
			calls++
		}
	}
	fmt.Printf("sink: %d\n", sink)
	fmt.Printf("Handle calls: %d\nMany calls: %d\nMixed calls: %d\nDescribe calls: %d\nBlank calls: %d\n",
		calls, calls, calls, calls, calls)
	fmt.Printf("Spill calls: %d\n", calls)
}
