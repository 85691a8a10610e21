// Package scrape has a method with a pointer receiver, named as Go names it in the binary:
// example.com/gonames/scrape.(*targetScraper).scrape (the shape of Prometheus's scraper).
package scrape

type targetScraper struct {
	calls int
}

//go:noinline
func (t *targetScraper) scrape(n int) int {
	t.calls++
	return n * 2
}

// Round calls scrape once for each value -500..=499 and returns the number of calls.
func Round() int {
	t := &targetScraper{}
	sum := 0
	for v := -500; v < 500; v++ {
		sum += t.scrape(v)
	}
	_ = sum
	return t.calls
}
