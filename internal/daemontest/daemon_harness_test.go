package daemontest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// partitions is the partition count of every topic.
const partitions = 4

// broker is an in-process Kafka broker.
type broker struct {
	cluster *kfake.Cluster
	addr    string
	prod    *kgo.Client // created by the first producer call
}

// producer returns the broker's producing client (records go to the
// partition they name), creating it on first use.
func (b *broker) producer(t *testing.T) *kgo.Client {
	t.Helper()
	if b.prod == nil {
		cl, err := kgo.NewClient(kgo.SeedBrokers(b.addr), kgo.RecordPartitioner(kgo.ManualPartitioner()),
			kgo.ProducerBatchMaxBytes(4<<20), kgo.MaxBufferedRecords(20000))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		b.prod = cl
	}
	return b.prod
}

// newBroker starts a one-broker kfake cluster on 127.0.0.1 with topics of
// four partitions each; the test's cleanup closes it.
func newBroker(t *testing.T, topics ...string) *broker {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topics...))
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return &broker{cluster: c, addr: c.ListenAddrs()[0]}
}

// freeAddr returns a 127.0.0.1 address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// daemonConfig is what differs between the config files of the tests.
type daemonConfig struct {
	broker string
	topics []string
	group  string
	pgURL  string // passed as CDCFLOW_PG_URL, never written to the file

	batchMaxEvents int // pipeline.batch_max_events; 0 for the default
}

// configYAML renders the config file: the shape the documentation gives
// for Kafka to PostgreSQL, plus table keys for DSQL, schema_table naming
// (the DSQL and Debezium histories use the same table names in different
// source schemas), a short batch wait and the metrics endpoint.
func (c daemonConfig) yaml(metricsAddr string) string {
	quoted := make([]string, len(c.topics))
	for i, tp := range c.topics {
		quoted[i] = strconv.Quote(tp)
	}
	batch := ""
	if c.batchMaxEvents > 0 {
		batch = fmt.Sprintf(", batch_max_events: %d", c.batchMaxEvents)
	}
	return fmt.Sprintf(`source:
  kafka: { brokers: [%q], topics: [%s], group: %s, start: earliest }
decode: { format: auto }
tables:
  customers: { key: [id] }
  orders: { key: [order_id] }
  order_items: { key: [order_id, line_no] }
  wide_metrics: { key: [id] }
sink:
  postgres: { url: "${CDCFLOW_PG_URL}", schema: public, table_naming: schema_table, dead_letter_table: true }
pipeline: { batch_max_wait: 50ms%s }
metrics: { listen: %q }
log: { level: info }
`, c.broker, strings.Join(quoted, ", "), c.group, batch, metricsAddr)
}

// tail keeps the last bytes written to it.
type tail struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (w *tail) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	if len(w.buf) > 2*w.max {
		w.buf = append(w.buf[:0], w.buf[len(w.buf)-w.max:]...)
	}
	return len(p), nil
}

func (w *tail) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	b := w.buf
	if len(b) > w.max {
		b = b[len(b)-w.max:]
	}
	return string(b)
}

// contains reports whether the kept output holds s.
func (w *tail) contains(s string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return bytes.Contains(w.buf, []byte(s))
}

// daemon is one `cdcflow run` child process.
type daemon struct {
	name    string
	metrics string // host:port of /metrics, /healthz, /readyz
	cmd     *exec.Cmd
	stderr  *tail
	done    chan struct{}
	waitErr error
}

// startDaemon writes a config file and starts `cdcflow run -c FILE`. The
// test's cleanup kills it if it is still running.
func startDaemon(t *testing.T, name string, cfg daemonConfig) *daemon {
	t.Helper()
	return runDaemon(t, name, cfg.yaml, "CDCFLOW_PG_URL="+cfg.pgURL)
}

// runDaemon writes the config yaml(metrics address) and starts `cdcflow run
// -c FILE` with env added to the environment. The test's cleanup kills it if
// it is still running.
func runDaemon(t *testing.T, name string, yaml func(metricsAddr string) string, env ...string) *daemon {
	t.Helper()
	bin := cdcflowBinary(t)
	addr := freeAddr(t)
	path := filepath.Join(t.TempDir(), name+".yaml")
	if err := os.WriteFile(path, []byte(yaml(addr)), 0o600); err != nil {
		t.Fatal(err)
	}
	d := &daemon{name: name, metrics: addr, stderr: &tail{max: 48 << 10}, done: make(chan struct{})}
	d.cmd = exec.Command(bin, "run", "-c", path)
	d.cmd.Env = append(os.Environ(), env...)
	d.cmd.Stdout = d.stderr
	d.cmd.Stderr = d.stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		d.waitErr = d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		if !d.exited() {
			_ = d.cmd.Process.Kill()
			<-d.done
		}
	})
	return d
}

func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// exitCode is the process's exit code once it exited (-1 for a signal).
func (d *daemon) exitCode() int {
	<-d.done
	if d.waitErr == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(d.waitErr, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// kill sends SIGKILL and waits for the process to be gone.
func (d *daemon) kill(t *testing.T) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil && !d.exited() {
		t.Fatalf("kill -9 %s: %v", d.name, err)
	}
	<-d.done
}

// terminate sends SIGTERM and fails t unless the daemon exits 0 within a
// minute.
func (d *daemon) terminate(t *testing.T) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil && !d.exited() {
		t.Fatalf("SIGTERM %s: %v", d.name, err)
	}
	select {
	case <-d.done:
	case <-time.After(time.Minute):
		_ = d.cmd.Process.Kill()
		<-d.done
		t.Fatalf("%s did not exit within a minute of SIGTERM; output tail:\n%s", d.name, d.stderr)
	}
	if code := d.exitCode(); code != 0 {
		t.Fatalf("%s exited %d after SIGTERM (want 0); output tail:\n%s", d.name, code, d.stderr)
	}
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

// scrape returns the /metrics text, or an error while the endpoint is not up.
func (d *daemon) scrape() (string, error) {
	resp, err := httpClient.Get("http://" + d.metrics + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("/metrics: %s", resp.Status)
	}
	return string(body), nil
}

// sample is one metric sample: its labels and value.
type sample struct {
	labels map[string]string
	value  float64
}

var labelRE = regexp.MustCompile(`(\w+)="((?:[^"\\]|\\.)*)"`)

// samples parses the samples of metric name from Prometheus text.
func samples(text, name string) []sample {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(\{[^}]*\})? ([^ \n]+)`)
	var out []sample
	for _, m := range re.FindAllStringSubmatch(text, -1) {
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			continue
		}
		s := sample{labels: map[string]string{}, value: v}
		for _, l := range labelRE.FindAllStringSubmatch(m[1], -1) {
			s.labels[l[1]] = l[2]
		}
		out = append(out, s)
	}
	return out
}

// metric returns the sum of metric name over its label sets, or -1 when
// the endpoint does not answer.
func (d *daemon) metric(name string) float64 {
	text, err := d.scrape()
	if err != nil {
		return -1
	}
	var sum float64
	for _, s := range samples(text, name) {
		sum += s.value
	}
	return sum
}

// lagPartitions returns the "topic[partition]" names the daemon reports
// cdcflow_consumer_lag for (the partitions it holds), nil when the endpoint
// does not answer.
func (d *daemon) lagPartitions() map[string]float64 {
	text, err := d.scrape()
	if err != nil {
		return nil
	}
	out := map[string]float64{}
	for _, s := range samples(text, "cdcflow_consumer_lag") {
		out[s.labels["topic"]+"["+s.labels["partition"]+"]"] = s.value
	}
	return out
}

// status returns the HTTP status of path (/healthz, /readyz), 0 when the
// endpoint does not answer.
func (d *daemon) status(path string) int {
	resp, err := httpClient.Get("http://" + d.metrics + path)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// waitFor polls cond every 200ms until it holds, failing t after timeout
// with what cond last said and the output tails of the daemons. A daemon
// that exits while waiting fails t at once.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string), daemons ...*daemon) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		for _, d := range daemons {
			if d.exited() {
				t.Fatalf("waiting for %s: %s exited with %d (%s); output tail:\n%s", what, d.name, d.exitCode(), state, d.stderr)
			}
		}
		if time.Now().After(deadline) {
			var b strings.Builder
			for _, d := range daemons {
				fmt.Fprintf(&b, "\n--- %s output tail:\n%s", d.name, d.stderr)
			}
			t.Fatalf("waiting for %s: not done after %s (%s)%s", what, timeout, state, b.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// ctxTimeout is a context for one database round trip.
func ctxTimeout() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}
