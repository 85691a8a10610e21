// A Go program whose traced function lives in a package below the module path, with a
// pointer receiver: for naming it the ways people type Go names.
package main

import (
	"fmt"

	"example.com/gonames/scrape"
)

func main() {
	fmt.Printf("scrape calls: %d\n", scrape.Round())
}
