package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ShutdownTimeout bounds how long Serve waits for in-flight requests after
// its context is done.
const ShutdownTimeout = 5 * time.Second

// Handler returns the HTTP handler of the daemon's observability endpoints:
//
//	/metrics  the registry in Prometheus text or OpenMetrics format
//	/healthz  200 "ok" while the process serves requests (liveness)
//	/readyz   200 "ready" when ready returns nil, else 503 with its error
//
// A nil ready means always ready. ready is called on every /readyz request
// and must be safe for concurrent use; its error text is served verbatim, so
// it must not contain secrets.
func Handler(reg *prometheus.Registry, ready func() error) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		Registry:          reg, // counts scrape errors as promhttp_metric_handler_errors_total
		ErrorHandling:     promhttp.ContinueOnError,
		EnableOpenMetrics: true,
	}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeText(w, http.StatusOK, "ok\n")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ready != nil {
			if err := ready(); err != nil {
				writeText(w, http.StatusServiceUnavailable, "not ready: "+err.Error()+"\n")
				return
			}
		}
		writeText(w, http.StatusOK, "ready\n")
	})
	return mux
}

func writeText(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, body)
}

// Server serves Handler on a listening socket. Create it with Listen.
type Server struct {
	ln  net.Listener
	srv *http.Server
}

// Listen opens the TCP address listen ("host:port"; port 0 picks a free
// one) for Handler(reg, ready). The socket is open when Listen returns, so
// address errors (in use, permission, bad syntax) surface here, before the
// pipeline starts.
func Listen(listen string, reg *prometheus.Registry, ready func() error) (*Server, error) {
	if listen == "" {
		return nil, errors.New("metrics listen address is empty (want host:port, e.g. 127.0.0.1:9090)")
	}
	if reg == nil {
		return nil, errors.New("metrics server: registry is nil")
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("metrics listen on %q: %w", listen, err)
	}
	return &Server{ln: ln, srv: &http.Server{
		Handler:           Handler(reg, ready),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}}, nil
}

// Addr returns the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve serves requests until ctx is done, then shuts down gracefully within
// ShutdownTimeout and returns nil. It returns an error only if serving
// fails. Serve may be called once.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("metrics server on %s: %w", s.ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
	defer cancel()
	if err := s.srv.Shutdown(sctx); err != nil {
		_ = s.srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics server on %s: %w", s.ln.Addr(), err)
	}
	return nil
}

// Serve listens on listen and serves Handler(reg, ready) until ctx is done;
// see Listen and Server.Serve. A listen error is returned at once.
func Serve(ctx context.Context, listen string, reg *prometheus.Registry, ready func() error) error {
	s, err := Listen(listen, reg, ready)
	if err != nil {
		return err
	}
	return s.Serve(ctx)
}
