package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskinesis "github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/cdcflow/cdcflow/internal/kinesistest"
)

// TestRunKinesisToDuckDB runs `cdcflow run` with a Kinesis source against
// kinesalite: DSQL records spread over two shards with random partition
// keys (as DSQL does), duplicates included; the merged table must equal the
// truth and the daemon must stop cleanly.
func TestRunKinesisToDuckDB(t *testing.T) {
	srv := kinesistest.Start(t)
	const stream = "dsql-cdc"
	srv.CreateStream(t, stream, 2)
	var entries []types.PutRecordsRequestEntry
	for id := 1; id <= 100; id++ {
		for v := 0; v < 2; v++ {
			ts := int64(1705318200000000000) + int64(id)*1000 + int64(v)
			rec := fmt.Sprintf(`{"type":"full","op":"c","before":null,"after":{"order_id":%d,"status":"v%d"},"source":{"ts_ns":%d,"txId":"t","schema":"public","table":"orders","cluster":"c"},"ts_ns":%d}`, id, v, ts, ts)
			for dup := 0; dup < 2; dup++ {
				entries = append(entries, types.PutRecordsRequestEntry{Data: []byte(rec), PartitionKey: aws.String(fmt.Sprint(id*7 + v + dup))})
			}
		}
	}
	for lo := 0; lo < len(entries); lo += 100 {
		out, err := srv.Client().PutRecords(context.Background(), &awskinesis.PutRecordsInput{StreamName: aws.String(stream), Records: entries[lo:min(lo+100, len(entries))]})
		if err != nil || aws.ToInt32(out.FailedRecordCount) != 0 {
			t.Fatalf("put records: %v %v", err, out)
		}
	}

	dir := t.TempDir()
	metricsAddr := freePort(t)
	cfgPath := filepath.Join(dir, "cdcflow.yaml")
	cfg := fmt.Sprintf(`source:
  kinesis: { stream: %s, region: us-east-1, endpoint: "%s", start: trim_horizon, access_key_id: %s, secret_access_key: %s }
decode: { format: dsql }
tables:
  orders: { key: [order_id] }
sink:
  duckdb: { path: %s }
pipeline: { batch_max_wait: 100ms }
metrics: { listen: "%s" }
`, stream, srv.Endpoint, kinesistest.AccessKeyID, kinesistest.SecretAccessKey, filepath.Join(dir, "k.duckdb"), metricsAddr)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut bytes.Buffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"run", "-c", cfgPath}, strings.NewReader(""), &out, &errOut) }()
	deadline := time.Now().Add(60 * time.Second)
	for metricValue(t, metricsAddr, "cdcflow_events_in_total") < float64(len(entries)) {
		if time.Now().After(deadline) {
			cancel()
			<-done
			t.Fatalf("events in = %v after 60s, want %d; stderr:\n%s", metricValue(t, metricsAddr, "cdcflow_events_in_total"), len(entries), errOut.String())
		}
		select {
		case code := <-done:
			t.Fatalf("daemon exited early with %d:\n%s", code, errOut.String())
		case <-time.After(200 * time.Millisecond):
		}
	}
	// Both shards were read: each has its delay series (kinesalite: 0).
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, shard := range []string{"shardId-000000000000", "shardId-000000000001"} {
		if series := fmt.Sprintf("cdcflow_source_millis_behind_latest{shard=%q,stream=%q} 0\n", shard, stream); !bytes.Contains(body, []byte(series)) {
			t.Errorf("/metrics lacks %q", series)
		}
	}
	cancel()
	if code := <-done; code != exitOK {
		t.Fatalf("daemon exit %d:\n%s", code, errOut.String())
	}
	code, q, qerr := cli(t, "", "query", "--sink", "duckdb://"+filepath.Join(dir, "k.duckdb"), "--output", "csv",
		"SELECT count(*), count(*) FILTER (WHERE status = 'v1'), (SELECT count(*) FROM cdc_events), (SELECT count(DISTINCT stream_position) FROM cdc_events) FROM orders")
	if code != exitOK {
		t.Fatalf("query: %s", qerr)
	}
	if got := strings.Split(strings.TrimSpace(q), "\n")[1]; got != fmt.Sprintf("100,100,%d,%d", len(entries), len(entries)) {
		t.Errorf("orders, at v1, log rows, distinct positions = %s; want 100,100,%d,%d", got, len(entries), len(entries))
	}
}
