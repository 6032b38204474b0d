// Command upstream is the benchmark's origin server: it answers every
// request with a fixed small JSON body, so the load test measures the
// proxies in front of it rather than the origin.
package main

import (
	"flag"
	"log"

	"github.com/valyala/fasthttp"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18000", "address to listen on")
	flag.Parse()
	body := []byte(`{"ok":true}`)
	srv := &fasthttp.Server{Name: "upstream", Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		ctx.SetBody(body)
	}}
	log.Fatal(srv.ListenAndServe(*listen))
}
