// Command keygate is the API-key authenticating reverse proxy: one binary
// for the server (serve), key management over the admin API (keys), and the
// store's housekeeping (bootstrap, migrate, check-config). It only parses the
// command line and wires packages together; the logic lives in them.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/alecthomas/kong"
)

// Set by the linker (see Makefile).
var (
	version = "dev"
	commit  = "none"
)

// Globals is what every command's Run gets: the process's context (ended
// by SIGINT/SIGTERM), environment and output streams, so commands can be
// run in-process by tests.
type Globals struct {
	Ctx    context.Context
	Getenv func(string) string
	Stdout io.Writer
	Stderr io.Writer
}

type rootCmd struct {
	Serve        ServeCmd        `cmd:"" help:"Run the proxy and admin listeners until SIGINT/SIGTERM."`
	Keys         KeysCmd         `cmd:"" help:"Manage keys through the admin API."`
	Bootstrap    BootstrapCmd    `cmd:"" help:"Create the first admin key directly in the store and print its secret once."`
	Migrate      MigrateCmd      `cmd:"" help:"Apply the store's schema migrations."`
	CheckConfig  CheckConfigCmd  `cmd:"" name:"check-config" help:"Validate the configuration and print every problem with its YAML path."`
	Version      VersionCmd      `cmd:"" help:"Print version, commit and Go version."`
	DemoUpstream DemoUpstreamCmd `cmd:"" name:"demo-upstream" hidden:"" help:"Run the echo server make run puts behind keygate."`
}

// exitCoder lets a command choose its exit status (for example check-config
// and keys import, which report problems themselves).
type exitCoder interface{ ExitCode() int }

type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }
func (e *exitError) ExitCode() int { return e.code }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command line and returns the process exit status:
// 0 success, 1 the command failed, 2 the command line is wrong.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) (code int) {
	var c rootCmd
	exited := false
	parser, err := kong.New(&c,
		kong.Name("keygate"),
		kong.Description("keygate: an API-key authenticating reverse proxy."),
		kong.Writers(stdout, stderr),
		kong.Exit(func(status int) { exited = true; code = status; panic(kongExit{}) }),
		kong.UsageOnError(),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
		kong.Resolvers(envResolver(getenv)),
	)
	if err != nil {
		fmt.Fprintln(stderr, "keygate:", err)
		return 2
	}
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(kongExit); !ok || !exited {
				panic(r)
			}
		}
	}()
	kctx, err := parser.Parse(keysFlagsAfterKeys(args))
	if err != nil {
		fmt.Fprintln(stderr, "keygate:", err)
		return 2
	}
	g := &Globals{Ctx: ctx, Getenv: getenv, Stdout: stdout, Stderr: stderr}
	err = kctx.Run(g, ctx)
	if err == nil {
		return 0
	}
	var ec exitCoder
	if errors.As(err, &ec) {
		if msg := err.Error(); ec.ExitCode() != 0 && !isSilent(err) {
			fmt.Fprintln(stderr, "keygate:", msg)
		}
		return ec.ExitCode()
	}
	fmt.Fprintln(stderr, "keygate:", err)
	return 1
}

// kongExit unwinds kong's --help (which wants to exit the process).
type kongExit struct{}

// silentError is an exit status whose details the command already printed.
type silentError struct{ code int }

func (e silentError) Error() string { return fmt.Sprintf("exit status %d", e.code) }
func (e silentError) ExitCode() int { return e.code }

func isSilent(err error) bool {
	var s silentError
	return errors.As(err, &s)
}

// envResolver resolves flags that declare `env:"..."` from getenv rather
// than the process environment, so tests can run commands in-process.
func envResolver(getenv func(string) string) kong.Resolver {
	return kong.ResolverFunc(func(_ *kong.Context, _ *kong.Path, flag *kong.Flag) (any, error) {
		for _, name := range flag.Envs {
			if v := getenv(name); v != "" {
				return v, nil
			}
		}
		return nil, nil
	})
}

// keysFlagsAfterKeys lets --admin-url and --output (-o) stand before the
// keys command too (`keygate --admin-url URL -o json keys list`), as
// CONTRACT §1 allows: they belong to `keys`, so they are moved right after
// it. Anything else is left as it is for kong to judge.
func keysFlagsAfterKeys(args []string) []string {
	at := -1
	for i, a := range args {
		if a == "keys" {
			at = i
			break
		}
		if a == "--" {
			return args
		}
	}
	if at <= 0 {
		return args
	}
	var moved, rest []string
	for i := 0; i < at; i++ {
		a := args[i]
		switch {
		case a == "--admin-url" || a == "--output" || a == "-o":
			if i+1 < at {
				moved = append(moved, a, args[i+1])
				i++
				continue
			}
		case strings.HasPrefix(a, "--admin-url=") || strings.HasPrefix(a, "--output=") ||
			(strings.HasPrefix(a, "-o") && len(a) > 2 && !strings.HasPrefix(a, "--")):
			moved = append(moved, a)
			continue
		}
		rest = append(rest, a)
	}
	if len(moved) == 0 {
		return args
	}
	out := append(rest, "keys")
	out = append(out, moved...)
	return append(out, args[at+1:]...)
}
