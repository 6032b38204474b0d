// Command bareproxy is the benchmark baseline: a fasthttp reverse proxy that
// forwards every request to one upstream with no authentication, built the
// way keygate's forwarding is (one HostClient, keep-alive). bench/run.sh
// measures keygate against it in the same run.
package main

import (
	"flag"
	"log"
	"os"
	"runtime/pprof"
	"time"

	"github.com/valyala/fasthttp"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18081", "address to listen on")
	upstream := flag.String("upstream", "127.0.0.1:18000", "upstream host:port")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the first -profile-seconds here (bench/pgo.sh)")
	profileSeconds := flag.Int("profile-seconds", 20, "how long -cpuprofile records")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		go func() {
			time.Sleep(time.Duration(*profileSeconds) * time.Second)
			pprof.StopCPUProfile()
			f.Close()
		}()
	}

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
