package kinesis

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/kinesistest"
)

// TestReadAndResume puts 5,000 DSQL records on 4 shards, reads them all
// once in per-shard order, then resumes from the checkpoints of a partial
// read: applied, held and KPL-indexed ones.
func TestReadAndResume(t *testing.T) {
	srv := env(t)
	const stream = "dsql-cdc"
	srv.CreateStream(t, stream, 4)
	want := putRecords(t, srv.Client(), stream, dsqlRecords(t, 1, 5000), keyN)
	shards := map[string]bool{}
	for _, p := range want {
		shards[p.Shard] = true
	}
	if len(shards) != 4 {
		t.Fatalf("records went to %d shards, want 4", len(shards))
	}

	t.Run("all once in order", func(t *testing.T) {
		o := testOptions(srv.Endpoint, stream)
		o.MaxBatchRecords = 700 // several batches, each holding whole GetRecords responses
		o.AccessKeyID, o.SecretAccessKey = kinesistest.AccessKeyID, kinesistest.SecretAccessKey
		s := newSource(t, o)
		got := readN(t, s, len(want), nil)
		checkExactlyOnce(t, stream, want, got)
		expectNothing(t, s)
		if mb := s.MillisBehind(); len(mb) != 4 {
			t.Errorf("MillisBehind has %d shards, want 4: %v", len(mb), mb)
		}
	})

	t.Run("resume", func(t *testing.T) {
		first := newSource(t, testOptions(srv.Endpoint, stream))
		o := testOptions(srv.Endpoint, stream)
		o.MaxBatchRecords = 300
		part := readN(t, first, 1200, nil)
		if err := first.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		cps := checkpointsOf(part)
		o.Checkpoints = staticCheckpoints(cps)
		second := newSource(t, o)
		rest := readN(t, second, len(want)-len(part), nil)
		checkExactlyOnce(t, stream, want, append(part, rest...))
		expectNothing(t, second)
	})

	t.Run("resume held", func(t *testing.T) {
		// A held checkpoint resumes AT the oldest held record, through
		// Resume (no Checkpoints func), after Applied.
		var (
			shard = want[0].Shard
			recs  []put
		)
		for _, p := range want {
			if p.Shard == shard {
				recs = append(recs, p)
			}
		}
		pos := func(p put) change.Position { return change.Position{Source: stream, Partition: shard, Offset: p.Seq} }
		var cps []change.Checkpoint
		for _, p := range want { // every other shard: fully applied
			if p.Shard != shard {
				cps = setApplied(cps, pos(p), p.Shard)
			}
		}
		cps = append(cps, change.Checkpoint{Source: stream, Partition: shard, Applied: pos(recs[20]), Held: true, Resume: pos(recs[10])})
		s := newSource(t, testOptions(srv.Endpoint, stream))
		if err := s.Resume(context.Background(), cps); err != nil {
			t.Fatal(err)
		}
		got := readN(t, s, len(recs)-10, nil)
		checkExactlyOnce(t, stream, recs[10:], got)
		expectNothing(t, s)
	})
}

// setApplied sets the shard's Applied position in cps.
func setApplied(cps []change.Checkpoint, p change.Position, shard string) []change.Checkpoint {
	for i := range cps {
		if cps[i].Partition == shard {
			cps[i].Applied = p
			return cps
		}
	}
	return append(cps, change.Checkpoint{Source: p.Source, Partition: shard, Applied: p})
}

// TestStartPolicies checks latest and at_timestamp on a stream that already
// holds records.
func TestStartPolicies(t *testing.T) {
	srv := env(t)
	const stream = "starts"
	srv.CreateStream(t, stream, 2)
	cl := srv.Client()
	putRecords(t, cl, stream, shortData("old", 100), keyN)

	t.Run("latest", func(t *testing.T) {
		s := newSource(t, Options{Stream: stream, Endpoint: srv.Endpoint, Start: StartLatest,
			PollInterval: 20 * time.Millisecond, Logger: testOptions("", "").Logger})
		waitReading(t, s, 2)
		want := putRecords(t, cl, stream, shortData("latest", 50), keyN)
		got := readN(t, s, len(want), nil)
		checkExactlyOnce(t, stream, want, got)
		expectNothing(t, s)
	})

	t.Run("at_timestamp", func(t *testing.T) {
		// kinesalite keeps arrival times in milliseconds; leave a margin
		// on both sides of the start time.
		time.Sleep(50 * time.Millisecond)
		at := time.Now()
		time.Sleep(50 * time.Millisecond)
		want := putRecords(t, cl, stream, shortData("after", 40), keyN)
		o := testOptions(srv.Endpoint, stream)
		o.Start, o.Timestamp = StartAtTimestamp, at
		s := newSource(t, o)
		got := readN(t, s, len(want), nil)
		checkExactlyOnce(t, stream, want, got)
		expectNothing(t, s)
	})
}

// TestNegativeAck checks that ack(err) redelivers from the first
// unacknowledged record of each shard of the batch and that later batches'
// acks are ignored, with nothing lost or duplicated in the final tally.
func TestNegativeAck(t *testing.T) {
	srv := env(t)
	const stream = "nacks"
	srv.CreateStream(t, stream, 2)
	want := putRecords(t, srv.Client(), stream, shortData("n", 600), keyN)
	o := testOptions(srv.Endpoint, stream)
	o.MaxBatchRecords = 50
	s := newSource(t, o)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// Hold two batches, nack the first: both are read again.
	r1, a1, err := s.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r2, a2, err := s.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := a1(ctx, errors.New("sink down")); err != nil {
		t.Fatal(err)
	}
	if err := a2(ctx, nil); err != nil { // dropped by the rewind: changes nothing
		t.Fatal(err)
	}
	// The nack rewinds r1's shards only: r2's records of other shards were
	// acknowledged for good.
	nacked := map[string]bool{}
	rewound := map[string]bool{}
	for _, r := range r1 {
		rewound[r.Position.Partition] = true
	}
	var kept []delivered
	for _, r := range append(r1, r2...) {
		if rewound[r.Position.Partition] {
			nacked[r.Position.String()] = true
		} else {
			kept = append(kept, delivered{Raw: r})
		}
	}
	nacks := 0
	got := readN(t, s, len(want)-len(kept), func(b int, raws []change.Raw) error {
		for _, r := range raws {
			delete(nacked, r.Position.String())
		}
		if b%3 == 1 && nacks < 3 { // a few more negative acks along the way
			nacks++
			return errors.New("transient")
		}
		return nil
	})
	if len(nacked) != 0 {
		t.Errorf("%d records of the nacked batches were not read again", len(nacked))
	}
	checkExactlyOnce(t, stream, want, append(kept, got...))
	expectNothing(t, s)
}

// TestKPL puts a KPL aggregate, a plain record and a record that only looks
// like an aggregate (bad MD5): the aggregate is split into indexed
// sub-records, the others are delivered whole.
func TestKPL(t *testing.T) {
	srv := env(t)
	const stream = "kpl"
	srv.CreateStream(t, stream, 1)
	subs := [][]byte{[]byte(`{"a":1}`), []byte(`{"b":2}`), {}, []byte(`{"c":3}`)}
	agg := aggregate([]string{"pk1", "pk2"}, subs, []uint64{0, 1, 0, 1})
	bad := append([]byte(nil), agg...)
	bad[len(bad)-1] ^= 0xff
	puts := putRecords(t, srv.Client(), stream, [][]byte{[]byte("plain"), agg, bad}, keyN)
	s := newSource(t, testOptions(srv.Endpoint, stream))
	got := readN(t, s, 6, nil)
	type want struct {
		data    string
		seq     string
		index   int
		indexed bool
	}
	wants := []want{
		{"plain", puts[0].Seq, 0, false},
		{`{"a":1}`, puts[1].Seq, 0, true},
		{`{"b":2}`, puts[1].Seq, 1, true},
		{``, puts[1].Seq, 2, true},
		{`{"c":3}`, puts[1].Seq, 3, true},
		{string(bad), puts[2].Seq, 0, false},
	}
	for i, w := range wants {
		g := got[i]
		if string(g.Data) != w.data || g.Position.Offset != w.seq || g.Position.Index != w.index || g.Position.Indexed != w.indexed {
			t.Errorf("record %d: got %s %q, want %s#%d (indexed %v) %q", i, g.Position, g.Data, w.seq, w.index, w.indexed, w.data)
		}
	}
	expectNothing(t, s)

	t.Run("resume inside an aggregate", func(t *testing.T) {
		// Applied is sub-record 1: the aggregate is read again from its
		// start (the pipeline drops what is at or before Applied).
		o := testOptions(srv.Endpoint, stream)
		o.Checkpoints = staticCheckpoints([]change.Checkpoint{{Source: stream, Partition: puts[1].Shard, Applied: got[2].Position}})
		s := newSource(t, o)
		again := readN(t, s, 5, nil)
		for i, g := range again {
			if g.Position != got[i+1].Position {
				t.Errorf("record %d: got %s, want %s", i, g.Position, got[i+1].Position)
			}
		}
		expectNothing(t, s)
	})
}

// faults is a proxy in front of kinesalite that answers some GetRecords
// calls with throttling or expired-iterator errors.
type faults struct {
	mu        sync.Mutex
	calls     int
	throttled int
	expired   int
	iterTypes []string // ShardIteratorType of every GetShardIterator
	inject    func(call int) string
	paged     int // ListShards: pages of one shard served
}

func (f *faults) handler(target *url.URL) http.Handler {
	proxy := httputil.NewSingleHostReverseProxy(target)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		op := r.Header.Get("X-Amz-Target")
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		f.mu.Lock()
		code := ""
		switch {
		case strings.HasSuffix(op, ".GetRecords"):
			f.calls++
			code = f.inject(f.calls)
			switch code {
			case "ProvisionedThroughputExceededException":
				f.throttled++
			case "ExpiredIteratorException":
				f.expired++
			}
		case strings.HasSuffix(op, ".ListShards"):
			f.mu.Unlock()
			f.listShardsPaged(w, r, body, proxy)
			return
		case strings.HasSuffix(op, ".GetShardIterator"):
			var in struct{ ShardIteratorType string }
			_ = json.Unmarshal(body, &in)
			f.iterTypes = append(f.iterTypes, in.ShardIteratorType)
		}
		f.mu.Unlock()
		if code != "" {
			w.Header().Set("Content-Type", "application/x-amz-json-1.1")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"__type":"` + code + `","message":"injected by the test"}`))
			return
		}
		proxy.ServeHTTP(w, r)
	})
}

// listShardsPaged serves ListShards one shard per page, as AWS pages long
// shard lists (kinesalite never does): NextToken is the index of the next
// shard, and a NextToken request must not name the stream.
func (f *faults) listShardsPaged(w http.ResponseWriter, r *http.Request, body []byte, proxy http.Handler) {
	var in struct{ StreamName, NextToken string }
	_ = json.Unmarshal(body, &in)
	page := 0
	if in.NextToken != "" {
		if in.StreamName != "" {
			http.Error(w, `{"__type":"InvalidArgumentException","message":"NextToken and StreamName cannot be provided together."}`, http.StatusBadRequest)
			return
		}
		stream, n, _ := strings.Cut(in.NextToken, "/")
		page, _ = strconv.Atoi(n)
		body, _ = json.Marshal(map[string]string{"StreamName": stream})
		in.StreamName = stream
	}
	rec := httptest.NewRecorder()
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	proxy.ServeHTTP(rec, r)
	var out struct{ Shards []json.RawMessage }
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &out) != nil || page >= len(out.Shards) {
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
		return
	}
	resp := map[string]any{"Shards": out.Shards[page : page+1]}
	if page+1 < len(out.Shards) {
		resp["NextToken"] = in.StreamName + "/" + strconv.Itoa(page+1)
	}
	f.mu.Lock()
	f.paged++
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	_ = json.NewEncoder(w).Encode(resp)
}

// TestListShardsPages reads a 4-shard stream whose shard list comes one
// shard per page.
func TestListShardsPages(t *testing.T) {
	srv := env(t)
	const stream = "pages"
	srv.CreateStream(t, stream, 4)
	want := putRecords(t, srv.Client(), stream, shortData("p", 200), keyN)
	target, _ := url.Parse(srv.Endpoint)
	f := &faults{inject: func(int) string { return "" }}
	proxy := httptest.NewServer(f.handler(target))
	defer proxy.Close()
	s := newSource(t, testOptions(proxy.URL, stream))
	got := readN(t, s, len(want), nil)
	checkExactlyOnce(t, stream, want, got)
	if sh := s.Shards(); len(sh) != 4 {
		t.Errorf("Shards() = %v, want 4", sh)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.paged < 4 {
		t.Errorf("served %d pages, want at least 4", f.paged)
	}
}

// TestPermanentErrors checks that errors retrying cannot fix reach Read (or
// New) with the stream and shard named.
func TestPermanentErrors(t *testing.T) {
	srv := env(t)
	const stream = "denied"
	srv.CreateStream(t, stream, 1)
	putRecords(t, srv.Client(), stream, shortData("d", 10), keyN)

	t.Run("missing stream", func(t *testing.T) {
		_, err := New(context.Background(), testOptions(srv.Endpoint, "nope"))
		if err == nil || !strings.Contains(err.Error(), "describe kinesis stream nope") || !strings.Contains(err.Error(), "ResourceNotFoundException") {
			t.Fatalf("New: %v", err)
		}
	})
	t.Run("access denied", func(t *testing.T) {
		target, _ := url.Parse(srv.Endpoint)
		f := &faults{inject: func(int) string { return "AccessDeniedException" }}
		proxy := httptest.NewServer(f.handler(target))
		defer proxy.Close()
		s := newSource(t, testOptions(proxy.URL, stream))
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, _, err := s.Read(ctx)
		if err == nil || !strings.Contains(err.Error(), "get records of kinesis denied[shardId-000000000000]") || !strings.Contains(err.Error(), "AccessDenied") {
			t.Fatalf("Read: %v", err)
		}
	})
}

// TestThrottlingAndExpiredIterators reads through a proxy that throttles
// and expires iterators: every record still arrives once, in order.
func TestThrottlingAndExpiredIterators(t *testing.T) {
	srv := env(t)
	const stream = "faults"
	srv.CreateStream(t, stream, 1) // one shard: the faults hit it in a known order
	want := putRecords(t, srv.Client(), stream, shortData("f", 1000), keyN)
	target, _ := url.Parse(srv.Endpoint)
	f := &faults{inject: func(call int) string {
		switch {
		case call >= 2 && call <= 6: // a burst: exponential backoff
			return "ProvisionedThroughputExceededException"
		case call == 8 || call == 11:
			return "ExpiredIteratorException"
		}
		return ""
	}}
	proxy := httptest.NewServer(f.handler(target))
	defer proxy.Close()
	o := testOptions(proxy.URL, stream)
	o.MaxBatchRecords = 100
	s := newSource(t, o) // GetRecords of 100: the faults fall between records
	got := readN(t, s, len(want), nil)
	checkExactlyOnce(t, stream, want, got)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.throttled != 5 || f.expired != 2 {
		t.Errorf("injected %d throttles and %d expirations, want 5 and 2", f.throttled, f.expired)
	}
	after := 0
	for _, ty := range f.iterTypes {
		if ty == string(types.ShardIteratorTypeAfterSequenceNumber) {
			after++
		}
	}
	if after < 1 {
		t.Errorf("no AFTER_SEQUENCE_NUMBER iterator after an expiry: %v", f.iterTypes)
	}
}

// TestSplitShard splits the only shard while the source reads it: the
// children are found and read after the parent; a new source reading from
// the start delivers every parent record before any child record.
func TestSplitShard(t *testing.T) {
	srv := env(t)
	const stream = "reshard"
	srv.CreateStream(t, stream, 1)
	cl := srv.Client()
	before := putRecords(t, cl, stream, shortData("parent", 300), keyN)
	parent := before[0].Shard
	s := newSource(t, testOptions(srv.Endpoint, stream))
	got := readN(t, s, 100, nil)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := cl.SplitShard(ctx, &kinesis.SplitShardInput{
		StreamName: aws.String(stream), ShardToSplit: aws.String(parent),
		NewStartingHashKey: aws.String("170141183460469231731687303715884105728"), // 2^127: the middle
	}); err != nil {
		t.Fatalf("split shard: %v", err)
	}
	if err := srv.WaitActive(ctx, stream); err != nil {
		t.Fatal(err)
	}
	afterSplit := putRecords(t, cl, stream, shortData("child", 300), keyN)
	children := map[string]bool{}
	for _, p := range afterSplit {
		children[p.Shard] = true
	}
	if len(children) != 2 || children[parent] {
		t.Fatalf("records after the split went to %v, want two new shards", children)
	}
	all := append(append([]put(nil), before...), afterSplit...)
	got = append(got, readN(t, s, len(all)-len(got), nil)...)
	checkExactlyOnce(t, stream, all, got)
	checkParentFirst(t, got, parent)
	expectNothing(t, s)
	if sh := s.Shards(); len(sh) != 3 || !sh[parent] {
		t.Errorf("Shards() = %v, want the parent finished and two children", sh)
	}

	t.Run("from the start", func(t *testing.T) {
		o := testOptions(srv.Endpoint, stream)
		o.MaxInFlight = 1
		s := newSource(t, o)
		got := readN(t, s, len(all), nil)
		checkExactlyOnce(t, stream, all, got)
		checkParentFirst(t, got, parent)
	})

	t.Run("latest skips the closed parent", func(t *testing.T) {
		o := testOptions(srv.Endpoint, stream)
		o.Start = StartLatest
		s := newSource(t, o)
		waitReading(t, s, 2) // the two children
		if sh := s.Shards(); !sh[parent] {
			t.Fatalf("Shards() = %v, want the closed parent finished at once", sh)
		}
		more := putRecords(t, cl, stream, shortData("late", 20), keyN)
		checkExactlyOnce(t, stream, more, readN(t, s, len(more), nil))
	})
}

// checkParentFirst checks that no child record was delivered before the
// parent's last record.
func checkParentFirst(t *testing.T, got []delivered, parent string) {
	t.Helper()
	lastParent, firstChild := -1, -1
	for i, d := range got {
		if d.Position.Partition == parent {
			lastParent = i
		} else if firstChild < 0 {
			firstChild = i
		}
	}
	if firstChild < 0 || lastParent < 0 || firstChild < lastParent {
		t.Errorf("first child record at %d, last parent record at %d: children must come after the parent", firstChild, lastParent)
	}
}

// TestAWSCLIProducer reads records put by an independent client, the AWS
// CLI.
func TestAWSCLIProducer(t *testing.T) {
	const aws = "/usr/bin/aws" // a pyenv "aws" may shadow Debian's in PATH
	if _, err := os.Stat(aws); err != nil {
		t.Fatalf("%s missing: run scripts/test.sh (installs awscli): %v", aws, err)
	}
	srv := env(t)
	const stream = "cli"
	srv.CreateStream(t, stream, 2)
	data := shortData("cli", 30)
	var entries []map[string]string
	for i, d := range data {
		entries = append(entries, map[string]string{"Data": string(d), "PartitionKey": keyN(i)})
	}
	file := filepath.Join(t.TempDir(), "records.json")
	b, _ := json.Marshal(entries)
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(aws, "kinesis", "put-records", "--endpoint-url", srv.Endpoint,
		"--stream-name", stream, "--records", "file://"+file, "--cli-binary-format", "raw-in-base64-out", "--output", "json")
	cmd.Env = append(os.Environ(), "AWS_PAGER=", "AWS_DEFAULT_REGION="+kinesistest.Region)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("aws kinesis put-records: %v\n%s", err, out)
	}
	var res struct {
		FailedRecordCount int
		Records           []struct{ SequenceNumber, ShardId string }
	}
	if err := json.Unmarshal(out, &res); err != nil || res.FailedRecordCount != 0 || len(res.Records) != len(data) {
		t.Fatalf("aws kinesis put-records answered %s (%v)", out, err)
	}
	var want []put
	for i, r := range res.Records {
		want = append(want, put{Data: data[i], Shard: r.ShardId, Seq: r.SequenceNumber})
	}
	s := newSource(t, testOptions(srv.Endpoint, stream))
	got := readN(t, s, len(want), nil)
	checkExactlyOnce(t, stream, want, got)
}

// TestOptions checks option validation.
func TestOptions(t *testing.T) {
	ts := time.Date(2025, 1, 31, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name string
		o    Options
		err  string
	}{
		{"no stream", Options{}, "stream: must be set"},
		{"bad arn", Options{Stream: "arn:aws:kinesis:us-east-1:1:table/x"}, "is not a Kinesis stream ARN"},
		{"bad start", Options{Stream: "s", Start: "earliest"}, `start: "earliest" is not`},
		{"timestamp missing", Options{Stream: "s", Start: StartAtTimestamp}, "timestamp: must be set"},
		{"timestamp without at_timestamp", Options{Stream: "s", Start: StartLatest, Timestamp: ts}, "timestamp: only valid"},
		{"bad endpoint", Options{Stream: "s", Endpoint: "127.0.0.1:4567"}, "endpoint"},
		{"negative in flight", Options{Stream: "s", MaxInFlight: -1}, "max_in_flight"},
		{"key without secret", Options{Stream: "s", AccessKeyID: "AKID"}, "secret_access_key"},
		{"ok arn", Options{Stream: "arn:aws:kinesis:us-east-1:123456789012:stream/dsql-cdc"}, ""},
		{"ok", Options{Stream: "s", Start: StartAtTimestamp, Timestamp: ts}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.o.setDefaults()
			switch {
			case c.err == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
				t.Fatalf("error %v, want one containing %q", err, c.err)
			}
		})
	}
	secret := Options{Stream: "s", AccessKeyID: "AKID", SecretAccessKey: "hunter2", SessionToken: "tok3n"}
	for _, verb := range []string{"%v", "%+v", "%s", "%#v"} {
		if out := fmt.Sprintf(verb, secret); strings.Contains(out, "hunter2") || strings.Contains(out, "tok3n") || !strings.Contains(out, "AKID") {
			t.Errorf("%s of Options = %s: secrets must be redacted", verb, out)
		}
	}
	if got := streamName("arn:aws:kinesis:us-east-1:123456789012:stream/dsql-cdc"); got != "dsql-cdc" {
		t.Errorf("streamName = %q", got)
	}
}
