package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// metricValue scrapes one counter (summed over its label sets) from /metrics.
func metricValue(t *testing.T, addr, name string) float64 {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var sum float64
	re := regexp.MustCompile(`(?m)^` + name + `(\{[^}]*\})? ([0-9.e+-]+)$`)
	for _, m := range re.FindAllStringSubmatch(string(body), -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		sum += v
	}
	return sum
}

// TestRunKafkaToDuckDB runs the daemon shape of `cdcflow run` against an
// in-process Kafka broker: DSQL records with duplicates and reordering across
// partitions, a poison record, then a clean shutdown (what SIGTERM does) and
// the merged table checked against the truth.
func TestRunKafkaToDuckDB(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "dsql.public.orders"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	broker := cluster.ListenAddrs()[0]

	// 300 orders, each inserted then updated twice; every record sent twice,
	// the copies on another partition, and updates produced before inserts
	// for a third of the keys.
	rec := func(id, version int) []byte {
		ts := int64(1705318200000000000) + int64(id)*1000 + int64(version)
		return []byte(fmt.Sprintf(`{"type":"full","op":"c","before":null,"after":{"order_id":%d,"status":"v%d"},"source":{"ts_ns":%d,"txId":"t%d","schema":"public","table":"orders","cluster":"c"},"ts_ns":%d}`,
			id, version, ts, id, ts))
	}
	var recs []*kgo.Record
	for id := 1; id <= 300; id++ {
		versions := []int{0, 1, 2}
		if id%3 == 0 {
			versions = []int{2, 0, 1}
		}
		for _, v := range versions {
			for copy := 0; copy < 2; copy++ {
				recs = append(recs, &kgo.Record{Topic: "dsql.public.orders", Partition: int32((id + copy) % 3), Value: rec(id, v)})
			}
		}
	}
	recs = append(recs, &kgo.Record{Topic: "dsql.public.orders", Partition: 0, Value: []byte(`{"not":"cdc"`)})
	prod, err := kgo.NewClient(kgo.SeedBrokers(broker), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	if err := prod.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	prod.Close()

	dir := t.TempDir()
	metricsAddr := freePort(t)
	cfgPath := filepath.Join(dir, "cdcflow.yaml")
	cfg := fmt.Sprintf(`source:
  kafka: { brokers: ["%s"], topics: ["dsql.public.orders"], group: cdcflow, start: earliest }
decode: { format: dsql }
tables:
  orders: { key: [order_id] }
sink:
  duckdb: { path: %s }
pipeline: { batch_max_wait: 100ms }
metrics: { listen: "%s" }
`, broker, filepath.Join(dir, "d.duckdb"), metricsAddr)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut bytes.Buffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"run", "-c", cfgPath}, strings.NewReader(""), &out, &errOut) }()

	deadline := time.Now().Add(60 * time.Second)
	want := float64(len(recs) - 1) // every good record decoded
	// Wait until every record is decoded and the poison record's dead
	// letter has been stored (it may ride in a later batch than the last
	// good event).
	for metricValue(t, metricsAddr, "cdcflow_events_in_total") < want || metricValue(t, metricsAddr, "cdcflow_dead_letters_total") < 1 {
		if time.Now().After(deadline) {
			cancel()
			<-done
			t.Fatalf("events in = %v after 60s, want %v; stderr:\n%s", metricValue(t, metricsAddr, "cdcflow_events_in_total"), want, errOut.String())
		}
		select {
		case code := <-done:
			t.Fatalf("daemon exited early with %d:\n%s", code, errOut.String())
		case <-time.After(200 * time.Millisecond):
		}
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get("http://" + metricsAddr + path)
		if err != nil || resp.StatusCode != 200 {
			t.Errorf("%s: %v %v", path, resp, err)
		}
	}
	if got := metricValue(t, metricsAddr, "cdcflow_dead_letters_total"); got != 1 {
		t.Errorf("dead letters metric = %v, want 1", got)
	}
	cancel() // what SIGINT/SIGTERM does
	if code := <-done; code != exitOK {
		t.Fatalf("daemon exit %d after a clean shutdown:\n%s", code, errOut.String())
	}

	code, q, qerr := cli(t, "", "query", "--sink", "duckdb://"+filepath.Join(dir, "d.duckdb"), "--output", "csv",
		"SELECT count(*), count(*) FILTER (WHERE status = 'v2'), (SELECT count(*) FROM cdc_events), (SELECT count(*) FROM cdc_dead_letters) FROM orders")
	if code != exitOK {
		t.Fatalf("query: %s", qerr)
	}
	lines := strings.Split(strings.TrimSpace(q), "\n")
	if len(lines) != 2 || lines[1] != fmt.Sprintf("300,300,%d,1", len(recs)-1) {
		t.Errorf("orders rows, rows at v2, log rows, dead letters = %q; want 300,300,%d,1", lines[len(lines)-1], len(recs)-1)
	}
}
