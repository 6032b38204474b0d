// Package echo is a small upstream for tests and the demo: it answers every
// request with a JSON description of what it received (method, request
// target, host, every header line in order, body), so a test can check
// exactly what a proxy forwarded. It counts the requests it served.
package echo

import (
	"encoding/json"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// Request is what the echo server reports about a request it received.
type Request struct {
	Method string `json:"method"`
	// URI is the request-target exactly as received.
	URI  string `json:"uri"`
	Host string `json:"host"`
	// Headers are the received header lines, in order, names as sent.
	Headers [][2]string `json:"headers"`
	Body    string      `json:"body"`
}

// Values returns every value of the header name (case-insensitive).
func (r *Request) Values(name string) []string {
	var vs []string
	for _, h := range r.Headers {
		if equalFold(h[0], name) {
			vs = append(vs, h[1])
		}
	}
	return vs
}

// HasPrefix reports whether any header's name starts with prefix
// (case-insensitive).
func (r *Request) HasPrefix(prefix string) bool {
	for _, h := range r.Headers {
		if len(h[0]) >= len(prefix) && equalFold(h[0][:len(prefix)], prefix) {
			return true
		}
	}
	return false
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// Server is the echo upstream. The zero value is ready to use.
type Server struct {
	hits atomic.Int64
	// Delay, when set before serving, makes every response wait that long
	// (for timeout tests).
	Delay time.Duration

	mu  sync.Mutex
	srv *fasthttp.Server
}

// Hits is the number of requests served.
func (s *Server) Hits() int64 { return s.hits.Load() }

// Handler answers with the JSON Request.
func (s *Server) Handler(ctx *fasthttp.RequestCtx) {
	s.hits.Add(1)
	r := Request{
		Method: string(ctx.Method()),
		URI:    string(ctx.Request.Header.RequestURI()),
		Host:   string(ctx.Request.Header.Host()),
		Body:   string(ctx.Request.Body()),
	}
	for k, v := range ctx.Request.Header.All() {
		r.Headers = append(r.Headers, [2]string{string(k), string(v)})
	}
	if s.Delay > 0 {
		time.Sleep(s.Delay)
	}
	b, err := json.Marshal(&r)
	if err != nil {
		ctx.Error(err.Error(), fasthttp.StatusInternalServerError)
		return
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
}

// Serve serves on ln until Close.
func (s *Server) Serve(ln net.Listener) error {
	srv := &fasthttp.Server{
		Handler:                       s.Handler,
		DisableHeaderNamesNormalizing: true,
		Name:                          "echo",
		ReadBufferSize:                64 << 10,
	}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	return srv.Serve(ln)
}

// Close stops a Serve.
func (s *Server) Close() error {
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	return srv.Shutdown()
}
