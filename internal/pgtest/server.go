package pgtest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// serverConf is appended to postgresql.conf: durability is pointless for a
// throwaway cluster, and parallel tests need many connections.
const serverConf = `
listen_addresses = '127.0.0.1'
unix_socket_directories = '%s'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 300
shared_buffers = 32MB
`

// server is a private cluster in a temporary directory.
type server struct {
	url      string
	dir      string
	watchdog *exec.Cmd
	stdin    io.WriteCloser // closing it makes the watchdog stop the cluster
}

// findBinaries returns the directory holding initdb, pg_ctl and postgres:
// the highest version under /usr/lib/postgresql, else the one on PATH.
func findBinaries() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if hasServer(d) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if d := filepath.Dir(p); hasServer(d) {
			return d, nil
		}
	}
	return "", ErrNoPostgres
}

func versionOf(binDir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	return v
}

func hasServer(dir string) bool {
	for _, n := range []string{"initdb", "pg_ctl", "postgres"} {
		if fi, err := os.Stat(filepath.Join(dir, n)); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// startServer creates and starts a cluster. PostgreSQL refuses to run as
// root, so under root every PostgreSQL program runs as the postgres user.
func startServer() (_ *server, err error) {
	bin, err := findBinaries()
	if err != nil {
		return nil, err
	}
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, errors.New("pgtest: running as root, and PostgreSQL must run as the \"postgres\" user, which does not exist; " +
				"install the postgresql package (.ci/run does) or set " + EnvURL)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}
	}

	dir, err := os.MkdirTemp("", "keygate-pg-")
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	s := &server{dir: dir}
	defer func() {
		if err != nil {
			s.stop()
		}
	}()
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, fmt.Errorf("pgtest: %w", err)
		}
	}
	data := filepath.Join(dir, "data")
	run := func(name string, args ...string) error {
		cmd := exec.Command(filepath.Join(bin, name), args...)
		cmd.Dir = dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("pgtest: %s: %v\n%s", name, err, out.Bytes())
		}
		return nil
	}
	// Byte-order collation, like Go's string comparison; a UTF-8 ctype so
	// ILIKE and lower() fold non-ASCII letters as production servers do.
	// Where C.UTF-8 is missing, plain C.
	initdb := []string{"-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"}
	if err := run("initdb", append(initdb, "--lc-ctype=C.UTF-8")...); err != nil {
		if rerr := os.RemoveAll(data); rerr != nil {
			return nil, fmt.Errorf("pgtest: %w", rerr)
		}
		if err2 := run("initdb", initdb...); err2 != nil {
			return nil, fmt.Errorf("%v\n%v", err, err2)
		}
	}
	conf, err := os.OpenFile(filepath.Join(data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	_, err = fmt.Fprintf(conf, serverConf, dir)
	if cerr := conf.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}

	// The watchdog stops the cluster and removes its files when its stdin
	// closes: when stop is called, and also when this process dies without
	// calling it (a test timeout, a signal), so no cluster outlives us. It
	// has its own session so a terminal's ^C reaches it only via the pipe.
	s.watchdog = exec.Command("/bin/sh", "-c", `cat >/dev/null; "$0" stop -D "$1" -m immediate -w >/dev/null 2>&1; rm -rf "$2"`,
		filepath.Join(bin, "pg_ctl"), data, dir)
	s.watchdog.Dir = dir
	s.watchdog.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setsid: true}
	if s.stdin, err = s.watchdog.StdinPipe(); err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	if err := s.watchdog.Start(); err != nil {
		s.watchdog = nil
		return nil, fmt.Errorf("pgtest: starting the watchdog: %w", err)
	}

	// Another test binary may take the port between our probe and the
	// server's bind; then try another.
	logFile := filepath.Join(dir, "server.log")
	for attempt := 0; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, fmt.Errorf("pgtest: %w", err)
		}
		err = run("pg_ctl", "start", "-D", data, "-l", logFile, "-w", "-t", "120", "-o", "-p "+strconv.Itoa(port))
		if err == nil {
			s.url = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
			return s, nil
		}
		log, _ := os.ReadFile(logFile)
		if attempt < 5 && bytes.Contains(log, []byte("could not bind")) {
			os.Truncate(logFile, 0)
			continue
		}
		return nil, fmt.Errorf("%v\nserver log:\n%s", err, tail(log, 4000))
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}

// stop stops the cluster immediately and removes its directory.
func (s *server) stop() error {
	var err error
	if s.watchdog != nil {
		s.stdin.Close()
		if werr := s.watchdog.Wait(); werr != nil {
			err = fmt.Errorf("pgtest: stopping the cluster: %w", werr)
		}
		s.watchdog = nil
	}
	if rerr := os.RemoveAll(s.dir); rerr != nil && err == nil {
		err = fmt.Errorf("pgtest: %w", rerr)
	}
	return err
}
