// The seed's regex/substring program, bounded: UsingSubstring in a goroutine and UsingRegex in
// main, for -seconds seconds (the regex allocates, so the GC stays busy). Prints call counts.
package main

import (
	"flag"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

var haystack = `Lorem ipsum dolor sit amet, consectetur adipiscing elit. Cras accumsan nisl et iaculis fringilla. Integer sapien orci, facilisis ut venenatis nec, suscipit at massa. Cras suscipit lectus non neque molestie, et imperdiet sem ultricies. Donec sit amet mattis nisi, efficitur posuere enim. Aliquam erat volutpat. Curabitur interdum pellentesque est, nec vehicula diam auctor in. Vivamus vitae nulla posuere, pellentesque quam posuere`

//go:noinline
func UsingSubstring() bool {
	found := strings.Contains(haystack, "auctor")
	return found
}

//go:noinline
func UsingRegex() bool {
	found, _ := regexp.MatchString("auctor", haystack)
	return found
}

func main() {
	seconds := flag.Float64("seconds", 10, "how long to run")
	flag.Parse()
	deadline := time.Now().Add(time.Duration(*seconds * float64(time.Second)))
	var stop atomic.Bool
	var substring, regex int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			UsingSubstring()
			substring++
		}
	}()
	for time.Now().Before(deadline) {
		UsingRegex()
		regex++
	}
	stop.Store(true)
	wg.Wait()
	fmt.Printf("UsingSubstring calls: %d\n", substring)
	fmt.Printf("UsingRegex calls: %d\n", regex)
}
