package scrape

// serverHandler has a method with a value receiver, called through an interface that holds a
// pointer: Go then also generates the wrapper example.com/gonames/scrape.(*serverHandler).ServeHTTP,
// whose name differs from the method's only by `(*` `)` (the shape of net/http's).
type serverHandler struct {
	calls *int
}

//go:noinline
func (h serverHandler) ServeHTTP(n int) int {
	*h.calls++
	return n + 1
}

type handler interface {
	ServeHTTP(n int) int
}

// opaque hides the handler's type from the caller, so every call goes through the interface
// (the pointer wrapper), never devirtualised to the method itself.
//
//go:noinline
func opaque(h handler) handler {
	return h
}

// Serve makes 300 calls through the interface and returns the number of ServeHTTP calls.
func Serve() int {
	calls := 0
	h := opaque(&serverHandler{calls: &calls})
	for i := 0; i < 300; i++ {
		h.ServeHTTP(i)
	}
	return calls
}
