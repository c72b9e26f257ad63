package kinesis

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/kinesistest"
	"github.com/cdcflow/cdcflow/internal/source"
	"github.com/cdcflow/cdcflow/internal/testgen"
)

// env starts kinesalite and sets dummy AWS credentials for the test.
func env(t *testing.T) *kinesistest.Server {
	t.Helper()
	t.Setenv("AWS_ACCESS_KEY_ID", kinesistest.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", kinesistest.SecretAccessKey)
	t.Setenv("AWS_REGION", kinesistest.Region)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	return kinesistest.Start(t)
}

// testOptions are fast settings for a stream of srv; endpoint may differ
// from srv's (a fault-injecting proxy).
func testOptions(endpoint, stream string) Options {
	return Options{
		Stream:           stream,
		Endpoint:         endpoint,
		PollInterval:     20 * time.Millisecond,
		DiscoverInterval: 100 * time.Millisecond,
		BackoffBase:      5 * time.Millisecond,
		BackoffMax:       50 * time.Millisecond,
		Logger:           slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

func newSource(t *testing.T, o Options) *Source {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := New(ctx, o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// put is one record as stored: where PutRecords put it.
type put struct {
	Data  []byte
	Shard string
	Seq   string
}

// putRecords puts data with PutRecords (500 a call) and returns where each
// record went.
func putRecords(t *testing.T, cl *kinesis.Client, stream string, data [][]byte, key func(i int) string) []put {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out []put
	for lo := 0; lo < len(data); lo += 500 {
		hi := min(lo+500, len(data))
		var entries []types.PutRecordsRequestEntry
		for i := lo; i < hi; i++ {
			entries = append(entries, types.PutRecordsRequestEntry{Data: data[i], PartitionKey: aws.String(key(i))})
		}
		res, err := cl.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String(stream), Records: entries})
		if err != nil {
			t.Fatalf("put records %d..%d: %v", lo, hi, err)
		}
		if n := aws.ToInt32(res.FailedRecordCount); n != 0 {
			t.Fatalf("put records %d..%d: %d failed", lo, hi, n)
		}
		for i, r := range res.Records {
			out = append(out, put{Data: data[lo+i], Shard: aws.ToString(r.ShardId), Seq: aws.ToString(r.SequenceNumber)})
		}
	}
	return out
}

// dsqlRecords returns n DSQL change records.
func dsqlRecords(t *testing.T, seed int64, n int) [][]byte {
	t.Helper()
	h := testgen.Generate(seed, testgen.Options{Changes: n, WideColumns: -1, BigRatio: -1})
	var out [][]byte
	for _, r := range testgen.EncodeDSQL(h, testgen.EncodeOptions{Seed: seed}) {
		out = append(out, r.Data)
		if len(out) == n {
			break
		}
	}
	if len(out) != n {
		t.Fatalf("testgen gave %d records, want %d", len(out), n)
	}
	return out
}

// delivered is one record as Read returned it, with its batch number.
type delivered struct {
	change.Raw
	Batch int
}

// readN reads until n records arrived, acknowledging each batch with
// ack (nil: ack(nil)).
func readN(t *testing.T, s *Source, n int, ack func(batch int, raws []change.Raw) error) []delivered {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out []delivered
	for b := 0; len(out) < n; b++ {
		raws, af, err := s.Read(ctx)
		if err != nil {
			t.Fatalf("Read after %d of %d records: %v", len(out), n, err)
		}
		var aerr error
		if ack != nil {
			aerr = ack(b, raws)
		}
		if aerr == nil {
			for _, r := range raws {
				out = append(out, delivered{Raw: r, Batch: b})
			}
		}
		if err := af(ctx, aerr); err != nil {
			t.Fatalf("ack: %v", err)
		}
	}
	return out
}

// expectNothing checks that Read returns nothing more within a short while
// (the stream holds no further records, so this cannot pass by luck).
func expectNothing(t *testing.T, s *Source) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	raws, af, err := s.Read(ctx)
	if err == nil {
		_ = af(context.Background(), nil)
		t.Fatalf("Read returned %d unexpected records, first %s", len(raws), raws[0].Position)
	}
	if ctx.Err() == nil {
		t.Fatalf("Read: %v", err)
	}
}

// checkExactlyOnce checks that got holds exactly the records of want, each
// once, in sequence order per shard, with their stored bytes.
func checkExactlyOnce(t *testing.T, stream string, want []put, got []delivered) {
	t.Helper()
	byShard := map[string][]put{}
	for _, p := range want {
		byShard[p.Shard] = append(byShard[p.Shard], p)
	}
	gotShard := map[string][]delivered{}
	for _, d := range got {
		if d.Position.Source != stream {
			t.Fatalf("record at %s: source %q, want %q", d.Position, d.Position.Source, stream)
		}
		gotShard[d.Position.Partition] = append(gotShard[d.Position.Partition], d)
	}
	if len(got) != len(want) {
		t.Errorf("got %d records, want %d", len(got), len(want))
	}
	for shard, ps := range byShard {
		ds := gotShard[shard]
		if len(ds) != len(ps) {
			t.Errorf("shard %s: got %d records, want %d", shard, len(ds), len(ps))
			continue
		}
		for i := range ps {
			if ds[i].Position.Offset != ps[i].Seq || string(ds[i].Data) != string(ps[i].Data) || ds[i].Position.Indexed {
				t.Fatalf("shard %s record %d: got %s %.40q, want seq %s %.40q", shard, i, ds[i].Position, ds[i].Data, ps[i].Seq, ps[i].Data)
			}
		}
	}
	for shard := range gotShard {
		if byShard[shard] == nil {
			t.Errorf("records from unexpected shard %s", shard)
		}
	}
}

// checkpointsOf returns, per shard, the checkpoint a sink would store after
// applying got.
func checkpointsOf(got []delivered) []change.Checkpoint {
	last := map[string]change.Position{}
	for _, d := range got {
		if p, ok := last[d.Position.Partition]; !ok || change.ComparePosition(d.Position, p) > 0 {
			last[d.Position.Partition] = d.Position
		}
	}
	var cps []change.Checkpoint
	for shard, p := range last {
		cps = append(cps, change.Checkpoint{Source: p.Source, Partition: shard, Applied: p})
	}
	return cps
}

func staticCheckpoints(cps []change.Checkpoint) func(context.Context, string) ([]change.Checkpoint, error) {
	return func(_ context.Context, stream string) ([]change.Checkpoint, error) {
		var out []change.Checkpoint
		for _, cp := range cps {
			if cp.Source == stream {
				out = append(out, cp)
			}
		}
		return out, nil
	}
}

// waitReading waits until every open shard answered a GetRecords, so a
// LATEST iterator exists for each.
func waitReading(t *testing.T, s *Source, shards int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.startOnce(ctx); err != nil {
		t.Fatal(err)
	}
	for len(s.MillisBehind()) < shards {
		select {
		case <-ctx.Done():
			t.Fatalf("only %d of %d shards polled: %v", len(s.MillisBehind()), shards, s.MillisBehind())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func keyN(i int) string { return fmt.Sprintf("key-%d", i) }

var _ source.Resumer = (*Source)(nil)

func shortData(prefix string, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = []byte(fmt.Sprintf(`{"%s":%d,"pad":"%s"}`, prefix, i, strings.Repeat("x", i%17)))
	}
	return out
}
