// Paths into arguments (`--arg 'r.URL.Path'`): a server on 127.0.0.1:0 and its own client,
// which sends a known set of requests (paths, methods, bodies, headers). The handler counts
// what it sees, and the program prints those counts: the tests compare probe's with them.
// `note` is also called with a nil request (a nil pointer on the path) and `limits` with a
// struct passed by value in registers.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
)

var (
	mu      sync.Mutex
	seen    = map[string]map[string]int{}
	handled int
)

func count(what, key string) {
	if seen[what] == nil {
		seen[what] = map[string]int{}
	}
	seen[what][key]++
}

// handle is the traced handler: r is a pointer in one register.
//
//go:noinline
func handle(w http.ResponseWriter, r *http.Request) {
	mu.Lock()
	count("path", r.URL.Path)
	count("method", r.Method)
	count("content-length", fmt.Sprint(r.ContentLength))
	count("headers", fmt.Sprint(len(r.Header)))
	handled++
	mu.Unlock()
	io.Copy(io.Discard, r.Body)
	note(r)
	w.Write([]byte("ok"))
}

var notes int

// note is called with each request and, from main, with nil.
//
//go:noinline
func note(r *http.Request) int {
	notes++
	if r == nil {
		return 0
	}
	return len(r.Method)
}

// Limits is passed by value: its fields take consecutive registers.
type Limits struct {
	Units int
	Name  string
	Max   int32
}

var limitsTotal int

//go:noinline
func limits(l Limits) int {
	limitsTotal += l.Units + len(l.Name) + int(l.Max)
	return l.Units
}

type request struct {
	method, path, body string
	headers            int // extra headers X-Extra-0..n-1
	times              int
}

func main() {
	rounds := flag.Int("rounds", 1, "rounds of requests")
	flag.Parse()
	mux := http.NewServeMux()
	mux.HandleFunc("/", handle)
	server := &http.Server{Handler: mux}
	listener, err := listen()
	if err != nil {
		panic(err)
	}
	go server.Serve(listener)
	base := "http://" + listener.Addr().String()
	requests := []request{
		{"GET", "/api/users", "", 0, 30},
		{"POST", "/api/orders", "{\"n\":1}", 1, 20},
		{"PUT", "/metrics", strings.Repeat("m", 100), 3, 10},
		{"GET", "/", "", 2, 5},
	}
	client := &http.Client{}
	sent := 0
	for r := 0; r < *rounds; r++ {
		for _, q := range requests {
			for i := 0; i < q.times; i++ {
				var body io.Reader
				if q.body != "" {
					body = bytes.NewBufferString(q.body)
				}
				req, err := http.NewRequest(q.method, base+q.path, body)
				if err != nil {
					panic(err)
				}
				for h := 0; h < q.headers; h++ {
					req.Header.Set(fmt.Sprintf("X-Extra-%d", h), "1")
				}
				resp, err := client.Do(req)
				if err != nil {
					panic(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				sent++
			}
		}
	}
	for i := 0; i < 3; i++ {
		note(nil)
	}
	for i := 0; i < 4; i++ {
		limits(Limits{Units: 10 + i, Name: "lim", Max: int32(100 * i)})
	}
	server.Close()
	mu.Lock()
	defer mu.Unlock()
	for _, what := range []string{"path", "method", "content-length", "headers"} {
		keys := make([]string, 0, len(seen[what]))
		for k := range seen[what] {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Printf("%s %s: %d\n", what, k, seen[what][k])
		}
	}
	fmt.Printf("handle calls: %d\n", handled)
	fmt.Printf("note calls: %d\n", notes)
	fmt.Printf("limits calls: 4\n")
	fmt.Printf("requests sent: %d\n", sent)
}
