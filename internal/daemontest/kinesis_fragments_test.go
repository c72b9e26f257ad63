package daemontest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskinesis "github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/jackc/pgx/v5"

	"github.com/cdcflow/cdcflow/internal/kinesistest"
	"github.com/cdcflow/cdcflow/internal/pgtest"
	"github.com/cdcflow/cdcflow/internal/sqlgen"
)

// TestKinesisFragmentsAcrossDaemons: DSQL writes the pieces of an
// oversized record under random partition keys, so with the shards split
// between two daemons, one reads a set's main record and the other its
// fragments. Here every set is spread over three shards on purpose. The
// daemons park what they cannot complete in PostgreSQL (_cdc_pieces), and
// whichever finds a set complete there stores it, once. One daemon is
// killed with kill -9 halfway: its parked pieces survive and the other
// completes their sets.
func TestKinesisFragmentsAcrossDaemons(t *testing.T) {
	srv := kinesistest.Start(t)
	const name = "dsql-fragments"
	srv.CreateStream(t, name, partitions)
	cl := srv.Client()
	url := pgtest.Start(t)
	ks := &kinesisStream{name: name, rng: rand.New(rand.NewPCG(2024, 11))}
	t.Cleanup(func() {
		if t.Failed() {
			dumpFragments(t, url)
		}
	})

	a := startKinesisDaemon(t, "daemon-a", srv.Endpoint, name, "daemon-a", url)
	b := startKinesisDaemon(t, "daemon-b", srv.Endpoint, name, "daemon-b", url)
	waitFor(t, smallTimeout, "a and b sharing the four shards", func() (bool, string) {
		ls := leaseTable(url, name)
		m := liveBy(ls)
		return m["daemon-a"] == 2 && m["daemon-b"] == 2, "leases:" + describeLeases(ls)
	}, a, b)

	const sets = 120 // and as many full records
	put := func(from, to int) {
		t.Helper()
		var entries []types.PutRecordsRequestEntry
		add := func(shard int, data string) {
			entries = append(entries, types.PutRecordsRequestEntry{Data: []byte(data),
				PartitionKey: aws.String("k"), ExplicitHashKey: aws.String(ks.hashKey(int32(shard % partitions)))})
		}
		for i := from; i < to; i++ {
			chunk := fmt.Sprintf("chunk-%04d", i)
			add(i, spreadMain(i, chunk))
			add(i+1, spreadFragment(i, chunk, 0))
			add(i+2, spreadFragment(i, chunk, 1))
			add(i+3, spreadFull(sets+i))
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for lo := 0; lo < len(entries); lo += 500 {
			out, err := cl.PutRecords(ctx, &awskinesis.PutRecordsInput{StreamName: aws.String(name), Records: entries[lo:min(lo+500, len(entries))]})
			if err != nil || aws.ToInt32(out.FailedRecordCount) != 0 {
				t.Fatalf("put records: %v (failed %d)", err, aws.ToInt32(out.FailedRecordCount))
			}
		}
	}
	stored := func(want int64) func() (bool, string) {
		return func() (bool, string) {
			e, d := progress(url)
			return e >= want, fmt.Sprintf("cdc_events %d of %d, dead letters %d", e, want, d)
		}
	}

	put(0, sets/2)
	waitFor(t, smallTimeout, "the first half stored", stored(sets), a, b)
	put(sets/2, sets*3/4)
	time.Sleep(2 * time.Second) // some of these held or parked when a dies
	a.kill(t)
	put(sets*3/4, sets)
	waitFor(t, smallTimeout, "every set and record stored", stored(2*sets), b)
	b.terminate(t)

	parked := 0
	for _, d := range []*daemon{a, b} {
		parked += strings.Count(d.stderr.String(), "parking DSQL pieces")
	}
	if parked == 0 {
		t.Error("no daemon parked a piece: the test did not exercise parking")
	}
	ctx, cancel := ctxTimeout()
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	count := func(q string) int64 {
		t.Helper()
		var n int64
		if err := conn.QueryRow(ctx, q).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return n
	}
	checks := []struct {
		query string
		want  int64
	}{
		{"SELECT count(*) FROM " + qualified(sqlgen.EventsTable), 2 * sets},
		{"SELECT count(DISTINCT record_id) FROM " + qualified(sqlgen.EventsTable), 2 * sets},
		{"SELECT count(*) FROM " + qualified(sqlgen.DeadLettersTable), 0},
		{"SELECT count(*) FROM " + qualified(sqlgen.PiecesTable), 0},
		{"SELECT count(*) FROM " + qualified(sqlgen.ChunksTable), sets},
		{"SELECT count(*) FROM public_docs", 2 * sets},
		{fmt.Sprintf("SELECT count(*) FROM public_docs WHERE id < %d AND big = %s", sets, sqlgen.QuoteLiteral(bigValue)), sets},
	}
	for _, c := range checks {
		if got := count(c.query); got != c.want {
			t.Errorf("%s = %d, want %d", c.query, got, c.want)
		}
	}
	t.Logf("%d parking log lines", parked)
}

// bigValue is the value of the reassembled column of every set.
const bigValue = "0123456789abcdef"

// spreadSource is the DSQL source block of row id of public.docs.
func spreadSource(id int) (string, int64) {
	ts := int64(1705318200000000000) + int64(id)*1000
	return fmt.Sprintf(`{"version":"1.0","ts_ms":%d,"ts_ns":%d,"txId":"tx%d","schema":"public","table":"docs","db":"postgres","cluster":"c1"}`, ts/1e6, ts, ts), ts
}

// spreadMain is the main record of an oversized insert of row id whose
// after image comes in two fragments of chunk.
func spreadMain(id int, chunk string) string {
	src, ts := spreadSource(id)
	return fmt.Sprintf(`{"type":"chunked","op":"c","before":null,"after":null,"source":%s,"ts_ns":%d,"chunked":{"chunk_id":%q,"fragments":2,"field":"after"}}`, src, ts+1, chunk)
}

// spreadFragment is fragment i (0 or 1) of row id's after image.
func spreadFragment(id int, chunk string, i int) string {
	parts := []string{fmt.Sprintf(`{\"id\":%d,`, id), `\"big\":\"` + bigValue + `\"}`}
	return fmt.Sprintf(`{"type":"fragment","chunk_id":%q,"index":%d,"data":"%s"}`, chunk, i, parts[i])
}

// spreadFull is a complete insert of row id.
func spreadFull(id int) string {
	src, ts := spreadSource(id)
	return fmt.Sprintf(`{"type":"full","op":"c","before":null,"after":{"id":%d,"big":"small"},"source":%s,"ts_ns":%d}`, id, src, ts+1)
}

// dumpFragments logs what the database holds of the sets, when the test
// failed.
func dumpFragments(t *testing.T, url string) {
	ctx, cancel := ctxTimeout()
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Logf("dump: %v", err)
		return
	}
	defer conn.Close(ctx)
	for _, q := range []string{
		"SELECT string_agg(chunk_id || ':' || idx || '@' || stream_partition, ' ' ORDER BY chunk_id, idx) FROM " + qualified(sqlgen.PiecesTable),
		"SELECT string_agg(record_id, ' ' ORDER BY record_id::int) FROM (SELECT generate_series(0, 239)::text AS record_id EXCEPT SELECT record_id FROM " + qualified(sqlgen.EventsTable) + ") m",
		"SELECT string_agg(chunk_id, ' ' ORDER BY chunk_id) FROM " + qualified(sqlgen.ChunksTable),
	} {
		var out *string
		if err := conn.QueryRow(ctx, q).Scan(&out); err != nil {
			t.Logf("dump %s: %v", q, err)
			continue
		}
		if out != nil {
			t.Logf("%s:\n%s", q, *out)
		}
	}
}
