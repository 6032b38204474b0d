package main

import (
	"net"

	"github.com/keygate/keygate/internal/echo"
)

// DemoUpstreamCmd runs the echo upstream that make run puts behind keygate:
// it answers every request with a JSON description of what it received.
type DemoUpstreamCmd struct {
	Listen string `default:"127.0.0.1:3000" help:"Address to listen on."`
}

// Run serves until the process is stopped.
func (c *DemoUpstreamCmd) Run(g *Globals) error {
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return err
	}
	srv := &echo.Server{}
	go func() { <-g.Ctx.Done(); srv.Close() }()
	if err := srv.Serve(ln); err != nil && g.Ctx.Err() == nil {
		return err
	}
	return nil
}
