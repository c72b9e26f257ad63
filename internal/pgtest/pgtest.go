// Package pgtest starts a private PostgreSQL server for a test binary and
// hands each caller a fresh database on it.
//
// Use it from TestMain so the server is stopped when the tests end:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
//	func TestX(t *testing.T) {
//		url := pgtest.Start(t) // a new, empty database
//		...
//	}
//
// The server is started once per test binary, on first use: initdb into a
// temporary directory (owned by the postgres user when the tests run as
// root, because initdb refuses to run as root), listening on 127.0.0.1 on a
// free port with its Unix socket inside that directory, fsync on (benchmarks
// measure real durability), password authentication for TCP. If the
// PostgreSQL server binaries (Debian's /usr/lib/postgresql/<version>/bin)
// are missing, Start fails the test and says to run scripts/test.sh, which
// installs them; it never skips.
//
// CDCFLOW_TEST_PG_URL names an external server to use instead (a superuser
// URL: Start creates a database per call on it). Stop and Restart skip the
// test, saying so, on an external server.
//
// Invariants:
//   - One server per test binary; Start never returns the same database twice.
//   - The server does not outlive the test binary: Main stops it, and a
//     watchdog process stops it if the binary dies without running Main's
//     cleanup (a panic, a test timeout).
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvURL is the environment variable naming an external server.
const EnvURL = "CDCFLOW_TEST_PG_URL"

// User is the superuser of the private server.
const User = "cdcflow"

var (
	mu      sync.Mutex
	srv     *server
	srvErr  error
	started bool
	dbSeq   atomic.Int64
)

// server is the private (or external) PostgreSQL server.
type server struct {
	external string // CDCFLOW_TEST_PG_URL when set

	bin      string // directory holding initdb, pg_ctl, postgres
	dir      string // temporary directory: data/, socket, log
	port     int
	password string
	asUser   string // "postgres" when running as root, else ""
	running  bool
}

// Main runs the tests of m and then stops the server, if one was started,
// and exits with the tests' status. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if err := shutdown(); err != nil {
		fmt.Fprintln(os.Stderr, "pgtest:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// Start returns the URL of a new, empty database on the test server,
// starting the server on first use. It fails t when no server can be had.
// The URL holds the superuser's password.
func Start(t testing.TB) string {
	t.Helper()
	s, err := get()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	name := fmt.Sprintf("t%d_%d", os.Getpid(), dbSeq.Add(1))
	if err := s.createDB(name); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	return s.url(name)
}

// Stop stops the test server (fast shutdown: open connections are
// closed). Restart starts it again. On an external server it skips t.
func Stop(t testing.TB) {
	t.Helper()
	s := running(t)
	mu.Lock()
	defer mu.Unlock()
	if err := s.stop("fast"); err != nil {
		t.Fatalf("pgtest: stop server: %v", err)
	}
}

// Restart starts the test server again after Stop, or stops and starts it
// if it is running. Databases and their data survive. On an external server
// it skips t.
func Restart(t testing.TB) {
	t.Helper()
	s := running(t)
	mu.Lock()
	defer mu.Unlock()
	if s.running {
		if err := s.stop("fast"); err != nil {
			t.Fatalf("pgtest: stop server: %v", err)
		}
	}
	if err := s.start(); err != nil {
		t.Fatalf("pgtest: restart server: %v", err)
	}
}

func running(t testing.TB) *server {
	t.Helper()
	s, err := get()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	if s.external != "" {
		t.Skipf("pgtest: cannot stop or restart the external server of %s", EnvURL)
	}
	return s
}

// get returns the server, starting it on first use.
func get() (*server, error) {
	mu.Lock()
	defer mu.Unlock()
	if started {
		return srv, srvErr
	}
	started = true
	if u := os.Getenv(EnvURL); u != "" {
		srv = &server{external: u}
		return srv, nil
	}
	srv, srvErr = launch()
	return srv, srvErr
}

func shutdown() error {
	mu.Lock()
	defer mu.Unlock()
	if srv == nil || srv.external != "" {
		return nil
	}
	var err error
	if srv.running {
		err = srv.stop("fast")
	}
	if rerr := os.RemoveAll(srv.dir); err == nil {
		err = rerr
	}
	srv = nil
	return err
}

// binDir finds the newest PostgreSQL server installation.
func binDir() (string, error) { return findBinDir("/usr/lib/postgresql/*/bin", "pg_config") }

// findBinDir looks for initdb in the directories matching pattern (newest
// version first), then in the directory pgConfig --bindir names.
func findBinDir(pattern, pgConfig string) (string, error) {
	dirs, _ := filepath.Glob(pattern)
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	if out, err := exec.Command(pgConfig, "--bindir").Output(); err == nil {
		d := strings.TrimSpace(string(out))
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("PostgreSQL server binaries (initdb, pg_ctl) not found under " + pattern + ": " +
		"run scripts/test.sh, which installs the postgresql package, or set " + EnvURL + " to a server's superuser URL")
}

func version(binDir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	return v
}

func launch() (*server, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "cdcflow-pgtest-")
	if err != nil {
		return nil, err
	}
	s := &server{bin: bin, dir: dir}
	fail := func(err error) (*server, error) {
		os.RemoveAll(dir)
		return nil, err
	}
	if os.Geteuid() == 0 {
		s.asUser = "postgres"
		u, err := user.Lookup(s.asUser)
		if err != nil {
			return fail(fmt.Errorf("running as root needs the postgres user (from the postgresql package): %w", err))
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			return fail(err)
		}
	}
	pw := make([]byte, 12)
	if _, err := rand.Read(pw); err != nil {
		return fail(err)
	}
	s.password = "pw-" + hex.EncodeToString(pw)
	pwfile := filepath.Join(dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(s.password+"\n"), 0o600); err != nil {
		return fail(err)
	}
	if err := s.chown(pwfile); err != nil {
		return fail(err)
	}
	if out, err := s.run("initdb", "-D", s.data(), "-U", User, "--pwfile", pwfile,
		"--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions"); err != nil {
		return fail(fmt.Errorf("initdb: %v\n%s", err, out))
	}
	os.Remove(pwfile)
	if err := s.start(); err != nil {
		return fail(err)
	}
	s.watchdog()
	return s, nil
}

func (s *server) data() string { return filepath.Join(s.dir, "data") }

func (s *server) chown(path string) error {
	if s.asUser == "" {
		return nil
	}
	u, err := user.Lookup(s.asUser)
	if err != nil {
		return err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return os.Chown(path, uid, gid)
}

// run runs a PostgreSQL program, as the postgres user when we are root.
func (s *server) run(prog string, args ...string) ([]byte, error) {
	path := filepath.Join(s.bin, prog)
	var cmd *exec.Cmd
	if s.asUser != "" {
		cmd = exec.Command("runuser", append([]string{"-u", s.asUser, "--", path}, args...)...)
	} else {
		cmd = exec.Command(path, args...)
	}
	cmd.Dir = s.dir
	return cmd.CombinedOutput()
}

// freePort asks the kernel for a free TCP port on 127.0.0.1.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// start starts the server. The first start picks a free port (and another
// one if it was taken meanwhile); later starts keep it, because URLs handed
// out name it.
func (s *server) start() error {
	keep := s.port != 0
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		if !keep {
			p, err := freePort()
			if err != nil {
				return err
			}
			s.port = p
		}
		opts := strings.Join([]string{
			"-c listen_addresses=127.0.0.1",
			"-p " + strconv.Itoa(s.port),
			"-c unix_socket_directories=" + s.dir,
			"-c fsync=on",
			"-c synchronous_commit=on",
			"-c max_connections=100",
			"-c max_wal_size=2GB",
			"-c TimeZone=UTC",
		}, " ")
		logPath := filepath.Join(s.dir, "server.log")
		out, err := s.run("pg_ctl", "-D", s.data(), "-l", logPath, "-w", "-t", "60", "-o", opts, "start")
		if err == nil {
			s.running = true
			return nil
		}
		log, _ := os.ReadFile(logPath)
		lastErr = fmt.Errorf("pg_ctl start: %v\n%s\n%s", err, out, tail(string(log), 2000))
		if keep || !strings.Contains(string(log), "could not bind") {
			return lastErr
		}
	}
	return lastErr
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func (s *server) stop(mode string) error {
	out, err := s.run("pg_ctl", "-D", s.data(), "-m", mode, "-w", "-t", "60", "stop")
	if err != nil {
		return fmt.Errorf("pg_ctl stop: %v\n%s", err, out)
	}
	s.running = false
	return nil
}

// watchdog starts a detached shell that stops the server and removes its
// directory once this process is gone, whatever way it ends.
func (s *server) watchdog() {
	pgctl := filepath.Join(s.bin, "pg_ctl")
	stop := fmt.Sprintf("%s -D %s -m immediate stop", shellQuote(pgctl), shellQuote(s.data()))
	if s.asUser != "" {
		stop = "runuser -u " + s.asUser + " -- " + stop
	}
	script := fmt.Sprintf("while kill -0 %d 2>/dev/null; do sleep 1; done; %s >/dev/null 2>&1; rm -rf %s",
		os.Getpid(), stop, shellQuote(s.dir))
	cmd := exec.Command("sh", "-c", script)
	cmd.SysProcAttr = detached()
	if err := cmd.Start(); err == nil {
		go cmd.Wait() //nolint:errcheck // the watchdog outlives us by design
	}
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// url returns the URL of database name.
func (s *server) url(name string) string {
	if s.external != "" {
		u, err := url.Parse(s.external)
		if err != nil {
			return s.external
		}
		u.Path = "/" + name
		return u.String()
	}
	u := url.URL{Scheme: "postgres", User: url.UserPassword(User, s.password),
		Host: "127.0.0.1:" + strconv.Itoa(s.port), Path: "/" + name, RawQuery: "sslmode=disable"}
	return u.String()
}

// adminURL is the URL of the maintenance database.
func (s *server) adminURL() string {
	if s.external != "" {
		return s.external
	}
	return s.url("postgres")
}

func (s *server) createDB(name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.adminURL())
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	return err
}
