package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/admin/client"
)

// ImportCmd is `keygate keys import`.
type ImportCmd struct {
	File string `arg:"" help:"JSON Lines file, one key object per line with its \"secret\" (- for stdin)."`
}

// importLine is one line's outcome in --output json.
type importLine struct {
	Line    int             `json:"line"`
	OK      bool            `json:"ok"`
	Key     json.RawMessage `json:"key,omitempty"`
	Error   string          `json:"error,omitempty"`
	Field   string          `json:"field,omitempty"`
	Message string          `json:"message,omitempty"`
}

// Run imports each line through POST /v1/keys and reports each line: the
// key it became, or why not. Blank lines are skipped. It stops early only
// when the admin API is gone or refuses the admin key (exit 3); otherwise
// it exits 1 when any line failed. Secrets are never printed: the caller
// already has them.
func (c *ImportCmd) Run(s *Session) error {
	var in io.Reader
	total := int64(-1)
	if c.File == "-" {
		if s.Stdin == nil {
			return usageError("import: no standard input")
		}
		in = s.Stdin
	} else {
		f, err := os.Open(c.File)
		if err != nil {
			return usageError("import: %v", err)
		}
		defer f.Close()
		if total, err = countLines(f); err != nil {
			return usageError("import: %v", err)
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return usageError("import: %v", err)
		}
		in = f
	}

	var bar *progressbar.ProgressBar
	if s.progress() {
		bar = progressbar.NewOptions64(total, progressbar.OptionSetWriter(s.Stderr),
			progressbar.OptionSetDescription("importing"), progressbar.OptionShowCount(),
			progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish())
		_ = bar.RenderBlank()
	}
	report := func(format string, a ...any) {
		if bar != nil {
			_ = bar.Clear()
		}
		fmt.Fprintf(s.Stdout, format, a...)
	}

	r := bufio.NewReaderSize(in, 64<<10)
	var n, ok, failed int
	for {
		line, rerr := r.ReadBytes('\n')
		if len(line) == 0 && rerr != nil {
			if rerr != io.EOF {
				return &ExitError{Code: ExitFailed, Err: fmt.Errorf("import: reading line %d: %w", n+1, rerr)}
			}
			break
		}
		n++
		if bar != nil {
			_ = bar.Add(1)
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		res, err := c.importOne(s, line)
		var ae *client.APIError
		switch {
		case err == nil:
			ok++
			if s.JSON {
				out, _ := json.Marshal(importLine{Line: n, OK: true, Key: res})
				report("%s\n", out)
			} else {
				var k struct{ ID, Name string }
				_ = json.Unmarshal(res, &k)
				report("line %d: imported %s (%s)\n", n, clean(k.ID), clean(k.Name))
			}
		case errors.As(err, &ae) && ae.Status != 401 && ae.Status != 403:
			failed++
			if s.JSON {
				out, _ := json.Marshal(importLine{Line: n, Error: ae.Code, Field: ae.Field, Message: ae.Message})
				report("%s\n", out)
			} else {
				report("line %d: %s\n", n, lineError(ae))
			}
		default:
			if bar != nil {
				_ = bar.Clear()
			}
			return classify(fmt.Sprintf("import stopped at line %d (%d imported before it)", n, ok), err)
		}
		if rerr != nil {
			break
		}
	}
	if bar != nil {
		_ = bar.Finish()
	}
	if !s.JSON || failed > 0 {
		fmt.Fprintf(s.Stderr, "imported %d keys, %d lines failed\n", ok, failed)
	}
	if failed > 0 {
		return &ExitError{Code: ExitFailed, Err: fmt.Errorf("import: %d of %d keys failed", failed, ok+failed)}
	}
	return nil
}

// lineError is "<code>: <message> (<field>)".
func lineError(ae *client.APIError) string {
	msg := ae.Code
	if ae.Message != "" {
		msg += ": " + clean(ae.Message)
	}
	if ae.Field != "" {
		msg += " (" + clean(ae.Field) + ")"
	}
	return msg
}

// importOne imports one line, returning the API's key JSON. A line that is
// not an object with a secret fails here: without a secret the API would
// create a new key whose secret nobody would see.
func (c *ImportCmd) importOne(s *Session, line []byte) (json.RawMessage, error) {
	if len(line) > admin.MaxBodyBytes {
		return nil, &client.APIError{Code: "body_too_large", Message: "the line is over 1 MiB"}
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(line, &obj); err != nil || obj == nil {
		return nil, &client.APIError{Code: "bad_request", Message: "not a JSON object"}
	}
	var secret string
	if err := json.Unmarshal(obj["secret"], &secret); err != nil || secret == "" {
		return nil, &client.APIError{Code: "invalid_field", Field: "secret", Message: "each line needs the key's existing secret"}
	}
	var res struct {
		Key json.RawMessage `json:"key"`
	}
	raw, err := s.Client.Do(s.Ctx, "POST", "/v1/keys", nil, line)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		return nil, err
	}
	return res.Key, nil
}

// countLines counts lines (the last one may lack its newline) for the
// progress bar.
func countLines(r io.Reader) (int64, error) {
	buf := make([]byte, 64<<10)
	var n int64
	var last byte = '\n'
	for {
		k, err := r.Read(buf)
		if k > 0 {
			n += int64(bytes.Count(buf[:k], []byte{'\n'}))
			last = buf[k-1]
		}
		if err == io.EOF {
			if last != '\n' {
				n++
			}
			return n, nil
		}
		if err != nil {
			return 0, err
		}
	}
}
