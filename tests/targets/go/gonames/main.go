// A Go program whose traced functions live in packages below the module path: a method with
// a pointer receiver, a value method Go also wraps for pointers, and a method with a name as
// long as caddy's, for naming them the ways people type Go names and showing them.
package main

import (
	"fmt"

	"example.com/gonames/internal/caddyserver/modules/caddyhttp/reverseproxy"
	"example.com/gonames/scrape"
)

func main() {
	fmt.Printf("scrape calls: %d\n", scrape.Round())
	fmt.Printf("ServeHTTP calls: %d\n", scrape.Serve())
	fmt.Printf("proxy calls: %d\n", reverseproxy.Proxy())
}
