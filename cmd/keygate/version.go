package main

import (
	"fmt"
	"runtime"
)

// VersionCmd prints version, commit and Go version.
type VersionCmd struct{}

// Run prints the build's identity.
func (VersionCmd) Run(g *Globals) error {
	_, err := fmt.Fprintf(g.Stdout, "keygate %s (commit %s, %s)\n", version, commit, runtime.Version())
	return err
}
