// Package kinesistest starts private kinesalite servers (a Kinesis Data
// Streams emulator running on node) for tests, and creates streams on them.
//
// It installs nothing: scripts/test.sh installs kinesalite with npm into
// $(go env GOPATH)/cdcflow-npm (or set CDCFLOW_NPM_DIR to a directory whose
// node_modules holds it). A test that needs kinesalite fails, never skips,
// when it is missing.
//
// Invariants:
//   - Each Start runs its own in-memory server, listening on 127.0.0.1 only,
//     on a port the kernel picked (no races between parallel tests); the
//     server is killed when the test ends.
//   - Stream state changes (create, split, merge) take a few milliseconds
//     instead of kinesalite's default 500.
package kinesistest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"go/build"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// Region is the region every client of a test server uses.
const Region = "us-east-1"

// Dummy credentials: kinesalite checks that a request is signed, not by whom.
const (
	AccessKeyID     = "AKIDKINESALITE"
	SecretAccessKey = "kinesalite-secret"
)

// Server is a running kinesalite.
type Server struct {
	Endpoint string // http://127.0.0.1:PORT
	Port     int
}

// script starts kinesalite on 127.0.0.1 and an ephemeral port and prints
// the port. The kinesalite CLI binds every interface, reads "--ssl false" as
// true and cannot pick a free port, hence this wrapper.
const script = `
// kinesalite rethrows the error of a request whose client went away
// (a source closing mid-GetRecords) and dies; a real Kinesis shrugs.
process.on('uncaughtException', (err) => {
  if (err && (err.code === 'ECONNRESET' || err.message === 'aborted')) return;
  console.error(err);
  process.exit(1);
});
const kinesalite = require(process.argv[1]);
const server = kinesalite({createStreamMs: 5, deleteStreamMs: 5, updateStreamMs: 5, shardLimit: 100});
server.listen(0, '127.0.0.1', () => console.log('KINESALITE_PORT ' + server.address().port));
process.stdin.on('end', () => process.exit(0)); // the test process went away
process.stdin.resume();
`

// Dir returns the kinesalite package directory (node_modules/kinesalite)
// the test script installed, or an error saying how to install it.
func Dir() (string, error) {
	var roots []string
	if d := os.Getenv("CDCFLOW_NPM_DIR"); d != "" {
		roots = append(roots, d)
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		gopath = build.Default.GOPATH
	}
	for _, p := range filepath.SplitList(gopath) {
		roots = append(roots, filepath.Join(p, "cdcflow-npm"))
	}
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
				roots = append(roots, filepath.Join(d, ".cache", "npm"))
				break
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	for _, r := range roots {
		if _, err := os.Stat(filepath.Join(r, "node_modules", ".bin", "kinesalite")); err == nil {
			return filepath.Join(r, "node_modules", "kinesalite"), nil
		}
	}
	return "", fmt.Errorf("kinesalite not found in %s: run scripts/test.sh (installs kinesalite)", strings.Join(roots, ", "))
}

// Start runs a kinesalite server for the test and returns it; the server is
// killed when the test ends. It fails the test when node or kinesalite is
// missing.
func Start(t testing.TB) *Server {
	t.Helper()
	dir, err := Dir()
	if err != nil {
		t.Fatal(err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node not found: run scripts/test.sh (installs kinesalite): %v", err)
	}
	cmd := exec.Command(node, "-e", script, dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start kinesalite: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		select {
		case <-exited:
			t.Errorf("kinesalite died during the test (%s): %s", cmd.ProcessState, stderr.String())
			return
		default:
		}
		_ = stdin.Close()
		_ = cmd.Process.Kill()
		<-exited
	})

	port := make(chan int, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var p int
			if _, err := fmt.Sscanf(sc.Text(), "KINESALITE_PORT %d", &p); err == nil {
				port <- p
			}
		}
	}()
	select {
	case p := <-port:
		return &Server{Endpoint: fmt.Sprintf("http://127.0.0.1:%d", p), Port: p}
	case <-exited:
		t.Fatalf("kinesalite exited before listening: %s", stderr.String())
	case <-time.After(60 * time.Second): // a loaded machine starts node slowly
		t.Fatalf("kinesalite did not listen within 60s: %s", stderr.String())
	}
	return nil
}

// Client returns a Kinesis client of the server with dummy credentials.
func (s *Server) Client() *kinesis.Client {
	return kinesis.New(kinesis.Options{
		Region:       Region,
		BaseEndpoint: aws.String(s.Endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider(AccessKeyID, SecretAccessKey, ""),
	})
}

// CreateStream creates a stream with the given shard count and waits until
// it is ACTIVE.
func (s *Server) CreateStream(t testing.TB, name string, shards int32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl := s.Client()
	if _, err := cl.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String(name), ShardCount: aws.Int32(shards)}); err != nil {
		t.Fatalf("create stream %s: %v", name, err)
	}
	if err := s.WaitActive(ctx, name); err != nil {
		t.Fatal(err)
	}
}

// WaitActive waits until the stream is ACTIVE (after a create, split or
// merge).
func (s *Server) WaitActive(ctx context.Context, name string) error {
	cl := s.Client()
	for {
		out, err := cl.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(name)})
		if err == nil && out.StreamDescriptionSummary.StreamStatus == types.StreamStatusActive {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.Join(fmt.Errorf("stream %s not active", name), err, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// syncBuffer collects a process's stderr while the test may read it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.b.Len() < 64<<10 {
		b.b.Write(p)
	}
	return len(p), nil
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
