package main

import (
	"os"

	"github.com/keygate/keygate/admin/cli"
)

// KeysCmd is `keygate keys`: key management through the admin API. The
// subcommands, their flags (--admin-url and --output may stand before or
// after the subcommand) and their exit codes live in admin/cli; this only
// hands them the process's context, environment and streams.
type KeysCmd struct {
	cli.Keys
}

// ProvideEnv is bound by kong for the subcommands' Run methods.
func (k *KeysCmd) ProvideEnv(g *Globals) *cli.Env {
	return &cli.Env{Ctx: g.Ctx, Getenv: g.Getenv, Stdin: os.Stdin, Stdout: g.Stdout, Stderr: g.Stderr}
}
