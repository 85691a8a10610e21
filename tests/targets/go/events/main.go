// Target of `probe latency --slower-than`: 10,000 calls of Work over 4 goroutines (one after
// the other, so no fast call waits while another goroutine runs), of which
// exactly 7 (the ids in slowIDs) sleep 2 ms. For each slow call it prints its arguments, its
// result and the id of the goroutine that made it (from runtime.Stack's "goroutine N" header):
//
//	slow call: id=ID n=N ret=R goroutine=G
//
// and "late call: ..." for any other call that took 1 ms or more by its own clock (descheduled
// on a busy machine), then "Work calls: 10000".
package main

import (
	"bytes"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

var calls int64

var slowIDs = map[int]bool{17: true, 1234: true, 2500: true, 4099: true, 6001: true, 8765: true, 9999: true}

//go:noinline
func Work(id int, n int) int {
	atomic.AddInt64(&calls, 1)
	if slowIDs[id] {
		time.Sleep(2 * time.Millisecond)
	}
	return id*2 + n
}

// goid is the calling goroutine's id, as runtime.Stack prints it.
func goid() int {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	buf = bytes.TrimPrefix(buf, []byte("goroutine "))
	id, _ := strconv.Atoi(string(buf[:bytes.IndexByte(buf, ' ')]))
	return id
}

func main() {
	const workers, total = 4, 10000
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for id := w; id < total; id += workers {
				n := id % 7
				start := time.Now()
				ret := Work(id, n)
				took := time.Since(start)
				kind := ""
				if slowIDs[id] {
					kind = "slow"
				} else if took >= time.Millisecond {
					kind = "late"
				}
				if kind != "" {
					g := goid()
					mu.Lock()
					fmt.Printf("%s call: id=%d n=%d ret=%d goroutine=%d\n", kind, id, n, ret, g)
					mu.Unlock()
				}
			}
		}(w)
		wg.Wait()
	}
	fmt.Printf("Work calls: %d\n", atomic.LoadInt64(&calls))
}
