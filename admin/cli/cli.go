// Package cli is the keygate keys command family: kong command structs
// whose Run methods call the admin API through package client and render
// its answers as tables or JSON. cmd/keygate embeds Keys and provides an
// *Env; everything else lives here so it can be tested in-process.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/alecthomas/kong"
	"golang.org/x/term"

	"github.com/keygate/keygate/admin/client"
)

// Exit codes of keygate keys (also in Keys.Help).
const (
	ExitOK          = 0 // done
	ExitFailed      = 1 // the API refused the operation (or some import lines failed)
	ExitUsage       = 2 // the command line is wrong
	ExitUnreachable = 3 // the admin API cannot be reached or does not accept the admin key
)

// AdminKeyEnv names the variable holding the admin key. It is never a flag:
// arguments show up in ps and shell history.
const AdminKeyEnv = "KEYGATE_ADMIN_KEY"

// Env is what the commands take from the process, so tests can run them
// in-process.
type Env struct {
	Ctx    context.Context
	Getenv func(string) string
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// HTTPClient calls the admin API; nil means a client with a 60s
	// timeout.
	HTTPClient *http.Client
	// Progress reports whether to draw progress bars on Stderr. Nil means
	// when Stderr is an *os.File on a terminal.
	Progress func() bool
}

func (e *Env) progress() bool {
	if e.Progress != nil {
		return e.Progress()
	}
	f, ok := e.Stderr.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// ExitError is a failure with its exit code; cmd/keygate prints Error()
// and exits with ExitCode().
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// ExitCode is the process exit status for this failure.
func (e *ExitError) ExitCode() int { return e.Code }

func usageError(format string, a ...any) error {
	return &ExitError{Code: ExitUsage, Err: fmt.Errorf(format, a...)}
}

// classify gives an error from the client its exit code: unreachable or
// refused admin key 3, any other API error 1.
func classify(what string, err error) error {
	if err == nil {
		return nil
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return err
	}
	var ae *client.APIError
	var ue *client.UnreachableError
	switch {
	case errors.As(err, &ue):
		return &ExitError{Code: ExitUnreachable, Err: fmt.Errorf("%s: %w", what, err)}
	case errors.As(err, &ae) && (ae.Status == http.StatusUnauthorized || ae.Status == http.StatusForbidden):
		return &ExitError{Code: ExitUnreachable, Err: fmt.Errorf("%s: the admin API refused the admin key (%s): %w", what, AdminKeyEnv, err)}
	}
	return &ExitError{Code: ExitFailed, Err: fmt.Errorf("%s: %w", what, err)}
}

// Session is what every subcommand's Run gets: the environment, the
// client and the output format.
type Session struct {
	*Env
	Client *client.Client
	JSON   bool
}

// Keys is `keygate keys`. Its flags may stand before or after the
// subcommand.
type Keys struct {
	AdminURL string `name:"admin-url" default:"http://127.0.0.1:9090" env:"KEYGATE_ADMIN_URL" help:"Admin API base URL."`
	Output   string `name:"output" short:"o" enum:"table,json" default:"table" help:"Output format: table or json (the API's JSON)."`

	Create         CreateCmd         `cmd:"" help:"Create a key and print its secret once."`
	List           ListCmd           `cmd:"" help:"List keys (one page, or --all)."`
	Show           ShowCmd           `cmd:"" help:"Show keys by id."`
	Update         UpdateCmd         `cmd:"" help:"Change a key; only the flags given are sent."`
	Enable         EnableCmd         `cmd:"" help:"Enable keys."`
	Disable        DisableCmd        `cmd:"" help:"Disable keys."`
	Rotate         RotateCmd         `cmd:"" help:"Issue a new secret and print it once."`
	Delete         DeleteCmd         `cmd:"" help:"Delete keys (no confirmation prompt: scripts run it)."`
	PurgeExpired   PurgeExpiredCmd   `cmd:"" name:"purge-expired" help:"Delete keys that have been expired for a while."`
	RevokeSessions RevokeSessionsCmd `cmd:"" name:"revoke-sessions" help:"End every session minted from a key."`
	Import         ImportCmd         `cmd:"" help:"Import existing keys from a JSON Lines file (- for stdin)."`
}

// Help is the long help of `keygate keys`.
func (k *Keys) Help() string {
	return `The admin key is read from ` + AdminKeyEnv + ` (never a flag: arguments show in ps).

Exit status:
  0  done
  1  the API refused the operation (message names the error code and field),
     or at least one import line failed
  2  the command line is wrong
  3  the admin API cannot be reached, or refuses the admin key`
}

// ProvideSession builds the Session the subcommands' Run methods take.
func (k *Keys) ProvideSession(env *Env) (*Session, error) {
	key := env.Getenv(AdminKeyEnv)
	if key == "" {
		return nil, &ExitError{Code: ExitUnreachable, Err: errors.New(AdminKeyEnv + " is not set: export the admin key (keygate bootstrap prints one)")}
	}
	c, err := client.New(k.AdminURL, key, env.HTTPClient)
	if err != nil {
		return nil, &ExitError{Code: ExitUsage, Err: err}
	}
	return &Session{Env: env, Client: c, JSON: k.Output == "json"}, nil
}

// FlagsSet is the names of the flags given on the command line, so update
// sends only those fields and create can tell an empty value from none.
type FlagsSet map[string]bool

// ProvideFlagsSet collects the flags given on the command line.
func (k *Keys) ProvideFlagsSet(kctx *kong.Context) FlagsSet {
	set := FlagsSet{}
	for _, p := range kctx.Path {
		if p.Flag != nil && !p.Resolved {
			set[p.Flag.Name] = true
		}
	}
	return set
}
