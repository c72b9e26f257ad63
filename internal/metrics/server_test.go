package metrics

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cdcflow/cdcflow/internal/change"
)

func get(t *testing.T, url string, header map[string]string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp.StatusCode, string(body), resp.Header
}

func TestServer(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	m.Decoded([]change.Event{ev("public", "orders", 0)})
	m.SetLagFunc(func() map[string]map[int32]int64 { return map[string]map[int32]int64{"orders": {0: 9}} })

	var notReady atomic.Pointer[error]
	ready := func() error {
		if p := notReady.Load(); p != nil {
			return *p
		}
		return nil
	}
	srv, err := Listen("127.0.0.1:0", reg, ready)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	url := "http://" + srv.Addr().String()

	t.Run("metrics", func(t *testing.T) {
		code, body, _ := get(t, url+"/metrics", nil)
		if code != http.StatusOK {
			t.Fatalf("/metrics = %d: %s", code, body)
		}
		for _, want := range []string{
			`cdcflow_events_in_total{table="public.orders"} 1`,
			`cdcflow_consumer_lag{partition="0",topic="orders"} 9`,
			`# TYPE cdcflow_batch_apply_seconds histogram`,
		} {
			if !strings.Contains(body, want) {
				t.Errorf("/metrics lacks %q:\n%s", want, body)
			}
		}
	})
	t.Run("openmetrics", func(t *testing.T) {
		code, body, h := get(t, url+"/metrics", map[string]string{"Accept": "application/openmetrics-text;version=1.0.0"})
		if code != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), "application/openmetrics-text") || !strings.HasSuffix(body, "# EOF\n") {
			t.Errorf("/metrics as OpenMetrics = %d %q, body ends %q", code, h.Get("Content-Type"), body[max(0, len(body)-20):])
		}
	})
	t.Run("healthz", func(t *testing.T) {
		if code, body, _ := get(t, url+"/healthz", nil); code != http.StatusOK || body != "ok\n" {
			t.Errorf("/healthz = %d %q", code, body)
		}
	})
	t.Run("readyz ready", func(t *testing.T) {
		if code, body, _ := get(t, url+"/readyz", nil); code != http.StatusOK || body != "ready\n" {
			t.Errorf("/readyz = %d %q", code, body)
		}
	})
	t.Run("readyz not ready", func(t *testing.T) {
		e := errors.New("sink duckdb \"/data/c.db\": not opened yet")
		notReady.Store(&e)
		defer notReady.Store(nil)
		code, body, _ := get(t, url+"/readyz", nil)
		if code != http.StatusServiceUnavailable || body != "not ready: sink duckdb \"/data/c.db\": not opened yet\n" {
			t.Errorf("/readyz = %d %q", code, body)
		}
		// Liveness is independent of readiness.
		if code, _, _ := get(t, url+"/healthz", nil); code != http.StatusOK {
			t.Errorf("/healthz while not ready = %d", code)
		}
	})
	t.Run("unknown path", func(t *testing.T) {
		if code, _, _ := get(t, url+"/nope", nil); code != http.StatusNotFound {
			t.Errorf("/nope = %d, want 404", code)
		}
	})

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after cancel = %v, want nil", err)
		}
	case <-time.After(30 * time.Second): // deadlock guard, not a timing assertion
		t.Fatal("Serve did not return after cancel")
	}
	if c, err := net.Dial("tcp", srv.Addr().String()); err == nil {
		c.Close()
		t.Error("server still accepts connections after shutdown")
	}
}

func TestNilReadyIsReady(t *testing.T) {
	reg := prometheus.NewRegistry()
	srv, err := Listen("127.0.0.1:0", reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	if code, _, _ := get(t, "http://"+srv.Addr().String()+"/readyz", nil); code != http.StatusOK {
		t.Errorf("/readyz with nil ready = %d", code)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestListenErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	reg := prometheus.NewRegistry()
	tests := []struct {
		name   string
		listen string
		reg    *prometheus.Registry
		want   []string
	}{
		{"empty", "", reg, []string{"metrics listen address is empty"}},
		{"in use", busy.Addr().String(), reg, []string{`metrics listen on "` + busy.Addr().String() + `"`, "address already in use"}},
		{"bad syntax", "localhost", reg, []string{`metrics listen on "localhost"`, "missing port"}},
		{"bad port", "127.0.0.1:99999", reg, []string{`metrics listen on "127.0.0.1:99999"`, "invalid port"}},
		{"nil registry", "127.0.0.1:0", nil, []string{"registry is nil"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Serve returns a listen error at once, without waiting for ctx.
			err := Serve(context.Background(), tt.listen, tt.reg, nil)
			if err == nil {
				t.Fatal("Serve returned nil")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}
