package main

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
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgServer is a private PostgreSQL server started from Debian's packages the
// way internal/pgtest starts one (pgtest needs a testing.TB): initdb into a
// temporary directory owned by the postgres user when we are root, listening
// on 127.0.0.1 on a free port, fsync and synchronous_commit on, password
// authentication over TCP. A detached watchdog stops it if this process dies
// without calling stop.
type pgServer struct {
	bin      string // initdb, pg_ctl
	dir      string // data/, socket, log
	port     int
	password string
	asUser   string // "postgres" when running as root
	version  string
}

const pgUser = "cdcflow"

// findPGBin returns the newest /usr/lib/postgresql/<version>/bin holding initdb.
func findPGBin() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	ver := func(d string) float64 {
		v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(d)), 64)
		return v
	}
	sort.Slice(dirs, func(i, j int) bool { return ver(dirs[i]) > ver(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: run scripts/test.sh (installs the postgresql package) or apt-get install postgresql")
}

func startPostgres() (*pgServer, error) {
	bin, err := findPGBin()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "cdcflow-kafkapg-")
	if err != nil {
		return nil, err
	}
	s := &pgServer{bin: bin, dir: dir, version: filepath.Base(filepath.Dir(bin))}
	fail := func(err error) (*pgServer, error) {
		os.RemoveAll(dir)
		return nil, err
	}
	if os.Geteuid() == 0 {
		s.asUser = "postgres"
		if err := s.chown(dir); err != nil {
			return fail(fmt.Errorf("running as root needs the postgres user (from the postgresql package): %w", err))
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
	if out, err := s.run("initdb", "-D", s.data(), "-U", pgUser, "--pwfile", pwfile,
		"--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions"); err != nil {
		return fail(fmt.Errorf("initdb: %v\n%s", err, out))
	}
	os.Remove(pwfile)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	s.port = l.Addr().(*net.TCPAddr).Port
	l.Close()
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
	if out, err := s.run("pg_ctl", "-D", s.data(), "-l", logPath, "-w", "-t", "60", "-o", opts, "start"); err != nil {
		log, _ := os.ReadFile(logPath)
		return fail(fmt.Errorf("pg_ctl start: %v\n%s\n%s", err, out, log))
	}
	s.watchdog()
	return s, nil
}

func (s *pgServer) data() string { return filepath.Join(s.dir, "data") }

func (s *pgServer) chown(path string) error {
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
func (s *pgServer) run(prog string, args ...string) ([]byte, error) {
	path := filepath.Join(s.bin, prog)
	cmd := exec.Command(path, args...)
	if s.asUser != "" {
		cmd = exec.Command("runuser", append([]string{"-u", s.asUser, "--", path}, args...)...)
	}
	cmd.Dir = s.dir
	return cmd.CombinedOutput()
}

// stop shuts the server down and removes its directory.
func (s *pgServer) stop() error {
	out, err := s.run("pg_ctl", "-D", s.data(), "-m", "fast", "-w", "-t", "60", "stop")
	if err != nil {
		return fmt.Errorf("pg_ctl stop: %v\n%s", err, out)
	}
	return os.RemoveAll(s.dir)
}

// watchdog starts a detached shell that stops the server and removes its
// directory once this process is gone, however it ends.
func (s *pgServer) watchdog() {
	q := func(v string) string { return "'" + strings.ReplaceAll(v, "'", `'\''`) + "'" }
	stop := fmt.Sprintf("%s -D %s -m immediate stop", q(filepath.Join(s.bin, "pg_ctl")), q(s.data()))
	if s.asUser != "" {
		stop = "runuser -u " + s.asUser + " -- " + stop
	}
	script := fmt.Sprintf("while kill -0 %d 2>/dev/null; do sleep 1; done; %s >/dev/null 2>&1; rm -rf %s", os.Getpid(), stop, q(s.dir))
	cmd := exec.Command("sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err == nil {
		go cmd.Wait() //nolint:errcheck // outlives us by design
	}
}

// url returns the URL of database db (it holds the password).
func (s *pgServer) url(db string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(pgUser, s.password),
		Host: "127.0.0.1:" + strconv.Itoa(s.port), Path: "/" + db, RawQuery: "sslmode=disable"}
	return u.String()
}

func (s *pgServer) exec(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, s.url("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

// createDB creates an empty database; dropDB removes one (its disk space
// comes back at once).
func (s *pgServer) createDB(ctx context.Context, name string) error {
	return s.exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
}

func (s *pgServer) dropDB(ctx context.Context, name string) error {
	return s.exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
}

// cpu returns the CPU time the server has used so far: the postmaster, its
// live children (backends, WAL writer, checkpointer, ...) and the children
// that have exited (the postmaster's cutime and cstime). Differences of two
// readings are the server's CPU over that interval.
func (s *pgServer) cpu() time.Duration {
	pidText, err := os.ReadFile(filepath.Join(s.data(), "postmaster.pid"))
	if err != nil {
		return 0
	}
	first, _, _ := strings.Cut(string(pidText), "\n")
	pm, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		return 0
	}
	// A child reaped between reading the postmaster and scanning /proc
	// would be missed: read the postmaster again, and retry if its reaped
	// children's time moved.
	for try := 0; ; try++ {
		st, ok := readStat(pm)
		if !ok {
			return 0
		}
		total := st.utime + st.stime + st.cutime + st.cstime
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == pm {
				continue
			}
			if c, ok := readStat(pid); ok && c.ppid == pm {
				total += c.utime + c.stime
			}
		}
		again, ok := readStat(pm)
		if !ok || (again.cutime == st.cutime && again.cstime == st.cstime) || try == 4 {
			return total
		}
	}
}

// selfCPU returns the CPU time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procStat holds the fields of /proc/<pid>/stat this program uses.
type procStat struct {
	ppid                         int
	utime, stime, cutime, cstime time.Duration
	rssPages                     int64
}

// readStat reads /proc/<pid>/stat (Linux; ok false when unreadable).
func readStat(pid int) (procStat, bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, false
	}
	return parseStat(string(data))
}

// parseStat parses the text of /proc/<pid>/stat. Field numbers are those
// of proc(5): ppid 4, utime 14, stime 15, cutime 16, cstime 17, rss 24.
func parseStat(s string) (procStat, bool) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 > len(s) {
		return procStat{}, false
	}
	f := strings.Fields(s[i+2:]) // f[0] is field 3 (state)
	if len(f) < 22 {
		return procStat{}, false
	}
	num := func(field int) int64 { v, _ := strconv.ParseInt(f[field-3], 10, 64); return v }
	tick := func(field int) time.Duration { return time.Duration(num(field)) * time.Second / 100 } // USER_HZ
	return procStat{ppid: int(num(4)), utime: tick(14), stime: tick(15), cutime: tick(16), cstime: tick(17), rssPages: num(24)}, true
}
