package daemontest

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/big"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskinesis "github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/jackc/pgx/v5"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/kinesistest"
	"github.com/cdcflow/cdcflow/internal/pgtest"
	"github.com/cdcflow/cdcflow/internal/sqlgen"
	"github.com/cdcflow/cdcflow/internal/testgen"
)

// kinesisStream is a generated stream put on kinesalite: the records of
// s (s.recs[i].partition is the shard, of the four the stream starts
// with, whose hash key range the record is put in) and where each went.
type kinesisStream struct {
	*stream
	name string
	pos  []string // change.Position.String() of s.recs[i]; "" before it is put
	rng  *rand.Rand
}

// quarter is a quarter of the 128-bit hash key space: the range of each
// of the stream's four initial shards.
var quarter = new(big.Int).Lsh(big.NewInt(1), 126)

// hashKey returns a random explicit hash key in the range of initial
// shard i (after a split, in one of its children).
func (k *kinesisStream) hashKey(i int32) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], k.rng.Uint64())
	binary.BigEndian.PutUint64(b[8:], k.rng.Uint64())
	off := new(big.Int).SetBytes(b[:])
	off.Mod(off, quarter)
	return off.Add(off, new(big.Int).Mul(quarter, big.NewInt(int64(i)))).String()
}

// put puts s.recs[from:to] (500 a call, in order) and records their
// positions.
func (k *kinesisStream) put(t *testing.T, cl *awskinesis.Client, from, to int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for lo := from; lo < to; lo += 500 {
		hi := min(lo+500, to)
		entries := make([]types.PutRecordsRequestEntry, 0, hi-lo)
		for i := lo; i < hi; i++ {
			r := &k.recs[i]
			entries = append(entries, types.PutRecordsRequestEntry{Data: r.value,
				PartitionKey: aws.String("k"), ExplicitHashKey: aws.String(k.hashKey(r.partition))})
		}
		out, err := cl.PutRecords(ctx, &awskinesis.PutRecordsInput{StreamName: aws.String(k.name), Records: entries})
		if err != nil {
			t.Fatalf("put records %d..%d: %v", lo, hi, err)
		}
		if n := aws.ToInt32(out.FailedRecordCount); n != 0 {
			t.Fatalf("put records %d..%d: %d failed", lo, hi, n)
		}
		for j, r := range out.Records {
			k.pos[lo+j] = change.Position{Source: k.name, Partition: aws.ToString(r.ShardId), Offset: aws.ToString(r.SequenceNumber)}.String()
		}
	}
}

// kinesisYAML is the config of a daemon reading the stream into
// PostgreSQL with shard leases: the shape docs/kinesis.md gives.
func kinesisYAML(endpoint, stream, owner, metricsAddr string) string {
	return fmt.Sprintf(`source:
  kinesis:
    stream: %s
    region: %s
    endpoint: %q
    start: trim_horizon
    access_key_id: %s
    secret_access_key: %s
    owner: %s
    lease_ttl: 3s
decode: { format: auto }
tables:
  customers: { key: [id] }
  orders: { key: [order_id] }
  order_items: { key: [order_id, line_no] }
  wide_metrics: { key: [id] }
sink:
  postgres: { url: "${CDCFLOW_PG_URL}", schema: public, table_naming: schema_table, dead_letter_table: true }
pipeline: { batch_max_wait: 50ms, batch_max_events: 2000 }
metrics: { listen: %q }
log: { level: info }
`, stream, kinesistest.Region, endpoint, kinesistest.AccessKeyID, kinesistest.SecretAccessKey, owner, metricsAddr)
}

// startKinesisDaemon starts `cdcflow run` on a Kinesis config; the test's
// cleanup kills it if it still runs.
func startKinesisDaemon(t *testing.T, name, endpoint, stream, owner, pgURL string) *daemon {
	t.Helper()
	yaml := func(addr string) string { return kinesisYAML(endpoint, stream, owner, addr) }
	return runDaemon(t, name, yaml, "CDCFLOW_PG_URL="+pgURL, "AWS_EC2_METADATA_DISABLED=true")
}

// leaseRow is one row of the lease table.
type leaseRow struct {
	shard, owner string
	epoch        int64
	live         bool // held and not expired, by the database clock
	finished     bool
}

// leaseTable reads the stream's leases; nil before the table exists.
func leaseTable(url, stream string) []leaseRow {
	ctx, cancel := ctxTimeout()
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT shard, owner, epoch, owner <> '' AND NOT finished AND expires_at > clock_timestamp(), finished
		FROM `+qualified("_cdc_leases")+` WHERE stream = $1 ORDER BY shard`, stream)
	if err != nil {
		return nil
	}
	defer rows.Close()
	var out []leaseRow
	for rows.Next() {
		var l leaseRow
		if err := rows.Scan(&l.shard, &l.owner, &l.epoch, &l.live, &l.finished); err != nil {
			return nil
		}
		out = append(out, l)
	}
	return out
}

// liveBy counts, per owner, the live leases.
func liveBy(ls []leaseRow) map[string]int {
	m := map[string]int{}
	for _, l := range ls {
		if l.live {
			m[l.owner]++
		}
	}
	return m
}

func describeLeases(ls []leaseRow) string {
	var b strings.Builder
	for _, l := range ls {
		state := "free"
		switch {
		case l.finished:
			state = "finished"
		case l.live:
			state = "live"
		case l.owner != "":
			state = "expired"
		}
		fmt.Fprintf(&b, " %s:%s@%d:%s", strings.TrimPrefix(l.shard, "shardId-"), l.owner, l.epoch, state)
	}
	return b.String()
}

// TestKinesisLeases runs two daemons (the real binary) that split the
// shards of a Kinesis stream (kinesalite) through the PostgreSQL sink's
// lease table, with at least 50k DSQL records (duplicates, reordering,
// poison) put while they run:
//   - both take a share of the four shards;
//   - a shard is split while they read;
//   - daemon a is killed with SIGKILL: once its leases expire (lease_ttl
//     3s) b takes every shard;
//   - a starts again under the same owner name and takes its share back
//     from b, which gives leases back with batches in flight;
//   - b is killed with SIGKILL and restarted at once under the same name:
//     it takes its own leases back without waiting for them to expire.
//
// Then every merged table must equal the truth, cdc_events must hold
// exactly one row per delivered good record (fencing: a batch read under a
// lease that was lost or given back is never stored) and cdc_dead_letters
// exactly the poison records.
func TestKinesisLeases(t *testing.T) {
	srv := kinesistest.Start(t)
	const name = "dsql-leased"
	srv.CreateStream(t, name, partitions)
	cl := srv.Client()
	s := newStream(t, streamSpec{topic: name, format: testgen.FormatDSQL, schema: "public", seed: 1313, records: n(50_000), poison: 3})
	t.Log(s.describe())
	ks := &kinesisStream{stream: s, name: name, pos: make([]string, len(s.recs)), rng: rand.New(rand.NewPCG(1313, 7))}
	url := pgtest.Start(t)
	total := len(s.recs)
	slice := func(i int) int { return total * i / 10 }

	// a starts alone with a backlog; b joins while a reads it, so a gives
	// two leases back with batches in flight.
	ks.put(t, cl, 0, slice(3))
	a := startKinesisDaemon(t, "daemon-a", srv.Endpoint, name, "daemon-a", url)
	waitFor(t, smallTimeout, "a holding the four shards and storing", func() (bool, string) {
		ls := leaseTable(url, name)
		e, _ := progress(url)
		return liveBy(ls)["daemon-a"] == partitions && e > 0, fmt.Sprintf("cdc_events %d, leases:%s", e, describeLeases(ls))
	}, a)
	b := startKinesisDaemon(t, "daemon-b", srv.Endpoint, name, "daemon-b", url)
	all := []*daemon{a, b}
	waitFor(t, smallTimeout, "a and b sharing the four shards", func() (bool, string) {
		ls := leaseTable(url, name)
		m := liveBy(ls)
		return m["daemon-a"] == 2 && m["daemon-b"] == 2, "leases:" + describeLeases(ls)
	}, a, b)
	ks.put(t, cl, slice(3), slice(5))

	// Split the first shard while both read.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := cl.SplitShard(ctx, &awskinesis.SplitShardInput{StreamName: aws.String(name),
		ShardToSplit: aws.String("shardId-000000000000"), NewStartingHashKey: aws.String(new(big.Int).Rsh(quarter, 1).String())}); err != nil {
		t.Fatalf("split shard: %v", err)
	}
	if err := srv.WaitActive(ctx, name); err != nil {
		t.Fatal(err)
	}
	ks.put(t, cl, slice(5), slice(6))
	waitFor(t, smallTimeout, "a third of the records stored", func() (bool, string) {
		e, _ := progress(url)
		return e >= int64(slice(3)), fmt.Sprintf("cdc_events %d", e)
	}, a, b)

	// kill -9 a: b takes its shards once their leases expire.
	a.kill(t)
	killed := time.Now()
	ks.put(t, cl, slice(6), slice(7))
	waitFor(t, smallTimeout, "b holding every readable shard", func() (bool, string) {
		ls := leaseTable(url, name)
		m := liveBy(ls)
		return m["daemon-a"] == 0 && m["daemon-b"] > 0 && m["daemon-b"] == readable(ls), "leases:" + describeLeases(ls)
	}, b)
	t.Logf("b took a's shards %s after kill -9", time.Since(killed).Round(time.Millisecond))

	// a again, under its name, while b has a backlog: b gives leases back
	// with batches in flight, and a takes them.
	ks.put(t, cl, slice(7), slice(8)+slice(1)/2)
	a = startKinesisDaemon(t, "daemon-a2", srv.Endpoint, name, "daemon-a", url)
	all = append(all, a)
	waitFor(t, smallTimeout, "a and b sharing the shards again", func() (bool, string) {
		ls := leaseTable(url, name)
		m := liveBy(ls)
		return m["daemon-a"] > 0 && m["daemon-b"] > 0, "leases:" + describeLeases(ls)
	}, a, b)

	// kill -9 b with a backlog and restart it at once: it takes its own
	// leases back without waiting for them to expire.
	ks.put(t, cl, slice(8)+slice(1)/2, total)
	before := liveBy(leaseTable(url, name))["daemon-b"]
	b.kill(t)
	b = startKinesisDaemon(t, "daemon-b2", srv.Endpoint, name, "daemon-b", url)
	all = append(all, b)
	waitStored(t, url, bigTimeout, []*stream{s}, a, b)
	t.Logf("b held %d leases when killed; final leases:%s", before, describeLeases(leaseTable(url, name)))

	ls := leaseTable(url, name)
	if len(ls) < partitions+2 {
		t.Errorf("lease table lists %d shards, want the 4 initial ones and the 2 children:%s", len(ls), describeLeases(ls))
	}
	for _, l := range ls {
		if l.shard == "shardId-000000000000" && !l.finished {
			t.Errorf("the split parent's lease is not finished:%s", describeLeases(ls))
		}
	}
	a.terminate(t)
	b.terminate(t)
	for _, d := range all {
		logLeaseEvents(t, d)
	}
	verifyKinesis(t, url, ks)
}

// logLeaseEvents logs what a daemon's output says about leases: takes,
// give-backs, losses and fenced batches.
func logLeaseEvents(t *testing.T, d *daemon) {
	t.Helper()
	counts := map[string]int{}
	for _, line := range strings.Split(d.stderr.String(), "\n") {
		for _, ev := range []string{"kinesis lease taken", "kinesis lease given back", "kinesis lease lost", "lease lost: not storing"} {
			if strings.Contains(line, ev) {
				counts[ev]++
			}
		}
	}
	t.Logf("%s (last 48KiB of output): %v", d.name, counts)
}

// readable counts the shards a daemon may hold: not finished.
func readable(ls []leaseRow) int {
	n := 0
	for _, l := range ls {
		if !l.finished {
			n++
		}
	}
	return n
}

// verifyKinesis checks the database against the stream: merged tables
// (checkTables), the event log and the dead letters, by Kinesis position.
func verifyKinesis(t *testing.T, url string, ks *kinesisStream) {
	t.Helper()
	ctx, cancel := ctxTimeout()
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("verify: connect: %v", err)
	}
	defer conn.Close(ctx)
	var bad []string
	for _, d := range []*diffs{kinesisLog(conn, ks), kinesisDead(conn, ks), checkTables(conn, ks.stream)} {
		if len(d.lines) > 0 {
			bad = append(bad, d.String())
		}
	}
	if len(bad) > 0 {
		t.Errorf("the database does not hold what was put:\n  %s", strings.Join(bad, "\n  "))
	}
}

// kinesisLog checks that cdc_events holds one row per good record, at its
// position, naming its change, and nothing else.
func kinesisLog(conn *pgx.Conn, ks *kinesisStream) *diffs {
	d := &diffs{check: "cdc_events: exactly one row per delivered good record"}
	wantAt := map[string]*outRecord{}
	for i := range ks.recs {
		if r := &ks.recs[i]; r.kind == good {
			if ks.pos[i] == "" {
				d.add("record %d was never put (test bug)", i)
				return d
			}
			wantAt[ks.pos[i]] = r
		}
	}
	ctx, cancel := ctxTimeout()
	defer cancel()
	rows, err := conn.Query(ctx, "SELECT coalesce(stream_position, ''), coalesce(source_schema, ''), source_table, record_id, operation FROM "+qualified(sqlgen.EventsTable))
	if err != nil {
		d.add("query: %v", err)
		return d
	}
	defer rows.Close()
	seen := map[string]int{}
	n := 0
	for rows.Next() {
		var pos, schema, table, id, op string
		if err := rows.Scan(&pos, &schema, &table, &id, &op); err != nil {
			d.add("scan: %v", err)
			return d
		}
		n++
		seen[pos]++
		w, ok := wantAt[pos]
		switch {
		case seen[pos] == 2:
			d.add("%s: logged more than once (%s.%s %s %s)", pos, schema, table, op, id)
		case !ok:
			d.add("%s: logged (%s.%s %s %s), but no good record was put there", pos, schema, table, op, id)
		case schema != ks.schema || table != w.table || id != w.recordID || (change.Op(op) == change.Delete) != w.del:
			d.add("%s: logged %s.%s %s %s, the record carries %s.%s %s (delete %t)", pos, schema, table, op, id, ks.schema, w.table, w.recordID, w.del)
		}
	}
	if err := rows.Err(); err != nil {
		d.add("rows: %v", err)
	}
	var missing []string
	for pos := range wantAt {
		if seen[pos] == 0 {
			missing = append(missing, pos)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		d.add("%d good records not logged, e.g. %s", len(missing), strings.Join(missing[:min(5, len(missing))], ", "))
	}
	if n != len(wantAt) {
		d.add("count(*) = %d, want %d", n, len(wantAt))
	}
	return d
}

// kinesisDead checks that cdc_dead_letters holds exactly the poison
// records, once each, with their bytes.
func kinesisDead(conn *pgx.Conn, ks *kinesisStream) *diffs {
	d := &diffs{check: "cdc_dead_letters: exactly the injected poison records"}
	wantAt := map[string][]byte{}
	for i := range ks.recs {
		if r := &ks.recs[i]; r.kind == poison {
			wantAt[ks.pos[i]] = r.value
		}
	}
	ctx, cancel := ctxTimeout()
	defer cancel()
	rows, err := conn.Query(ctx, "SELECT coalesce(position, ''), reason, raw FROM "+qualified(sqlgen.DeadLettersTable))
	if err != nil {
		d.add("query: %v", err)
		return d
	}
	defer rows.Close()
	seen := map[string]int{}
	for rows.Next() {
		var pos, reason string
		var raw []byte
		if err := rows.Scan(&pos, &reason, &raw); err != nil {
			d.add("scan: %v", err)
			return d
		}
		seen[pos]++
		w, ok := wantAt[pos]
		switch {
		case seen[pos] == 2:
			d.add("%s: stored more than once", pos)
		case !ok:
			d.add("%s: dead letter %s for a good record %.120q", pos, reason, raw)
		case !bytes.Equal(raw, w):
			d.add("%s: raw %q, want %q", pos, raw, w)
		}
	}
	if err := rows.Err(); err != nil {
		d.add("rows: %v", err)
	}
	for pos := range wantAt {
		if seen[pos] == 0 {
			d.add("%s: poison record not dead-lettered", pos)
		}
	}
	return d
}
