// Package reverseproxy has a method whose full name is as long as caddy's
// (github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy.(*Handler).ServeHTTP), for
// pictures whose titles must still show it.
package reverseproxy

type Handler struct {
	calls int
}

//go:noinline
func (h *Handler) ServeHTTP(n int) int {
	h.calls++
	return n + 1
}

// Proxy makes 200 calls and returns the number of ServeHTTP calls.
func Proxy() int {
	h := &Handler{}
	for i := 0; i < 200; i++ {
		h.ServeHTTP(i)
	}
	return h.calls
}
