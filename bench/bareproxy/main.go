// Command bareproxy is the benchmark baseline: a fasthttp reverse proxy that
// forwards every request to one upstream with no authentication, built the
// way keygate's forwarding is (one HostClient, keep-alive). bench/run.sh
// measures keygate against it in the same run.
package main

import (
	"flag"
	"log"
	"time"

	"github.com/valyala/fasthttp"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18081", "address to listen on")
	upstream := flag.String("upstream", "127.0.0.1:18000", "upstream host:port")
	flag.Parse()

	client := &fasthttp.HostClient{
		Addr:                   *upstream,
		MaxConns:               1024,
		ReadTimeout:            30 * time.Second,
		WriteTimeout:           30 * time.Second,
		DisablePathNormalizing: true,
	}
	handler := func(ctx *fasthttp.RequestCtx) {
		req := &ctx.Request
		req.Header.Del("Connection")
		if err := client.Do(req, &ctx.Response); err != nil {
			ctx.Error("upstream unavailable", fasthttp.StatusBadGateway)
			return
		}
		ctx.Response.Header.Del("Connection")
	}
	srv := &fasthttp.Server{Handler: handler, Name: "bareproxy"}
	log.Fatal(srv.ListenAndServe(*listen))
}
