package lambda

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The end-to-end tests build the real bootstrap binary and run it against
// a Runtime API served by the test (and, for the sink URL, a Secrets
// Manager GetSecretValue endpoint): the same HTTP protocol Lambda speaks.

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// bootstrap builds cmd/cdcflow-lambda with the documented command (for the
// host's OS and architecture) once per test run.
func bootstrap(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cdcflow-lambda-")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "bootstrap")
		cmd := exec.Command("go", "build", "-tags", "lambda.norpc", "-o", buildPath, "github.com/cdcflow/cdcflow/cmd/cdcflow-lambda")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

// posted is one POST the function made to the Runtime API.
type posted struct {
	path      string
	errorType string
	body      []byte
}

// runtimeAPI serves the Lambda Runtime API: /next hands out the queued
// events, in order, then blocks; every POST is recorded.
type runtimeAPI struct {
	events chan json.RawMessage
	posts  chan posted
	next   int
	mu     sync.Mutex
	secret string // SecretString served to GetSecretValue
}

func startRuntimeAPI(t *testing.T, secret string, events ...json.RawMessage) (*runtimeAPI, string) {
	t.Helper()
	api := &runtimeAPI{events: make(chan json.RawMessage, len(events)), posts: make(chan posted, 16), secret: secret}
	for _, e := range events {
		api.events <- e
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: api}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return api, ln.Addr().String()
}

func (a *runtimeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/" && r.Header.Get("X-Amz-Target") == "secretsmanager.GetSecretValue":
		var in struct{ SecretId string }
		_ = json.Unmarshal(body, &in)
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		_ = json.NewEncoder(w).Encode(map[string]any{"ARN": in.SecretId, "Name": "cdcflow-sink", "SecretString": a.secret, "VersionId": "v1"})
	case r.Method == http.MethodGet && r.URL.Path == "/2018-06-01/runtime/invocation/next":
		select {
		case ev := <-a.events:
			a.mu.Lock()
			a.next++
			id := "req-" + strconv.Itoa(a.next)
			a.mu.Unlock()
			h := w.Header()
			h.Set("Lambda-Runtime-Aws-Request-Id", id)
			h.Set("Lambda-Runtime-Deadline-Ms", strconv.FormatInt(time.Now().Add(60*time.Second).UnixMilli(), 10))
			h.Set("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:cdcflow")
			h.Set("Lambda-Runtime-Trace-Id", "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1")
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(ev)
		case <-r.Context().Done():
		}
	case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/2018-06-01/runtime/"):
		a.posts <- posted{path: r.URL.Path, errorType: r.Header.Get("Lambda-Runtime-Function-Error-Type"), body: body}
		w.WriteHeader(http.StatusAccepted)
	default:
		http.Error(w, "unexpected "+r.Method+" "+r.URL.Path, http.StatusNotFound)
	}
}

func (a *runtimeAPI) wait(t *testing.T, stderr *syncBuilder) posted {
	t.Helper()
	select {
	case p := <-a.posts:
		return p
	case <-time.After(2 * time.Minute):
		t.Fatalf("no POST from the function; its stderr:\n%s", stderr.String())
	}
	return posted{}
}

// syncBuilder is a strings.Builder safe to write from the exec goroutine.
type syncBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuilder) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuilder) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startBootstrap(t *testing.T, addr string, env ...string) (*exec.Cmd, *syncBuilder) {
	t.Helper()
	cmd := exec.Command(bootstrap(t))
	cmd.Env = append([]string{
		"AWS_LAMBDA_RUNTIME_API=" + addr,
		"HOME=" + t.TempDir(), // no ~/.aws of the machine
		"AWS_EC2_METADATA_DISABLED=true",
	}, env...)
	stderr := &syncBuilder{}
	cmd.Stderr = stderr
	cmd.Stdout = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd, stderr
}

// TestBootstrapEndToEnd runs the bootstrap binary with its sink URL in a
// Secrets Manager secret and feeds it four invocations: a Kinesis batch with
// poison records, a batch ending in held DSQL pieces (a batchItemFailures
// response), an event that is no stream event (an invocation error), and
// the first batch again (a retry that must not duplicate rows).
func TestBootstrapEndToEnd(t *testing.T) {
	dbPath := filepath.Join(t.TempDir(), "cdc.duckdb")
	first := fixture(t, "kinesis_dsql.json")
	api, addr := startRuntimeAPI(t, `{"url":"duckdb://`+dbPath+`"}`,
		first, fixture(t, "kinesis_dsql_held_1.json"), json.RawMessage(`{"hello":"world"}`), first)
	cmd, stderr := startBootstrap(t, addr,
		"CDCFLOW_SINK_URL_SECRET=arn:aws:secretsmanager:us-east-1:123456789012:secret:cdcflow-sink-AbCdEf",
		"CDCFLOW_KEYS="+testKeysEnv,
		"CDCFLOW_LOG_LEVEL=debug",
		"AWS_REGION=us-east-1",
		"AWS_ACCESS_KEY_ID=AKIDTEST",
		"AWS_SECRET_ACCESS_KEY=test-secret",
		"AWS_ENDPOINT_URL_SECRETS_MANAGER=http://"+addr,
	)

	wantResponses := []struct {
		path, body, errorType string
	}{
		{"/2018-06-01/runtime/invocation/req-1/response", `{"batchItemFailures":[]}`, ""},
		{"/2018-06-01/runtime/invocation/req-2/response", `{"batchItemFailures":[{"itemIdentifier":"4959` + strings.Repeat("0", 50) + `21"}]}`, ""},
		{"/2018-06-01/runtime/invocation/req-3/error", "", "errorString"},
		{"/2018-06-01/runtime/invocation/req-4/response", `{"batchItemFailures":[]}`, ""},
	}
	for _, want := range wantResponses {
		p := api.wait(t, stderr)
		if p.path != want.path {
			t.Fatalf("POST %s (%s), want %s; stderr:\n%s", p.path, p.body, want.path, stderr.String())
		}
		if want.body != "" && strings.TrimSpace(string(p.body)) != want.body {
			t.Errorf("%s body = %s, want %s", p.path, p.body, want.body)
		}
		if want.errorType != "" {
			var e struct{ ErrorMessage, ErrorType string }
			if err := json.Unmarshal(p.body, &e); err != nil || !strings.Contains(e.ErrorMessage, "not a Kinesis") {
				t.Errorf("%s body = %s, want an error naming the event kinds", p.path, p.body)
			}
		}
	}
	// Stop the function as Lambda does (no shutdown hook), then read what it
	// committed.
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	log := stderr.String()
	if !strings.Contains(log, `"msg":"batch applied"`) || !strings.Contains(log, `"request_id":"req-1"`) {
		t.Errorf("function log lacks the per-batch summary:\n%s", log)
	}
	s := openDuck(t, dbPath)
	got := readContents(t, s.DB())
	// Batch 1: 7 events, 2 dead letters; batch 2: the 2 complete orders;
	// batch 4 (the retry of batch 1): nothing new.
	if !mapsEqual(got.events, map[string]int{"customers": 2, "orders": 5, "order_items": 2}) ||
		!mapsEqual(got.dead, map[string]int{"unknown_format": 1, "invalid_envelope": 1}) {
		t.Errorf("sink holds events %v dead %v", got.events, got.dead)
	}
}

// TestBootstrapInitError: a bad configuration is reported to the init error
// endpoint, without the URL's password, and the process exits 1.
func TestBootstrapInitError(t *testing.T) {
	api, addr := startRuntimeAPI(t, "")
	cmd, stderr := startBootstrap(t, addr, "CDCFLOW_SINK_URL=mysql://admin:hunter2@db:3306/x", "CDCFLOW_LOG_LEVEL=loud")
	p := api.wait(t, stderr)
	if p.path != "/2018-06-01/runtime/init/error" || p.errorType != InitErrorType {
		t.Fatalf("POST %s (type %q), want the init error endpoint; stderr:\n%s", p.path, p.errorType, stderr.String())
	}
	var e struct{ ErrorMessage, ErrorType string }
	if err := json.Unmarshal(p.body, &e); err != nil {
		t.Fatalf("init error body %s: %v", p.body, err)
	}
	for _, want := range []string{"CDCFLOW_SINK_URL", "CDCFLOW_LOG_LEVEL"} {
		if !strings.Contains(e.ErrorMessage, want) {
			t.Errorf("init error %q does not name %s", e.ErrorMessage, want)
		}
	}
	if strings.Contains(e.ErrorMessage+stderr.String(), "hunter2") {
		t.Errorf("the password leaked: %q / %s", e.ErrorMessage, stderr.String())
	}
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("exit = %v, want status 1", err)
	}
}
