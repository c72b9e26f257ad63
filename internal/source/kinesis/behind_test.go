package kinesis

import (
	"context"
	"encoding/json"
	"maps"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/cdcflow/cdcflow/internal/metrics"
)

// backlogMillis is what behindProxy reports for a GetRecords response that
// holds records.
const backlogMillis = 4200

// behindProxy forwards to kinesalite and, for a GetRecords response that
// holds records, sets MillisBehindLatest to backlogMillis. kinesalite
// reports 0 for every open shard (and the time since the end for a closed
// shard read to its end); the rewrite shows that the value read is the
// value the service sent, not a constant.
func behindProxy(target *url.URL) http.Handler {
	proxy := httputil.NewSingleHostReverseProxy(target)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.Header.Get("X-Amz-Target"), ".GetRecords") {
			proxy.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		proxy.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		var out map[string]json.RawMessage
		if rec.Code == http.StatusOK && json.Unmarshal(body, &out) == nil {
			var recs []json.RawMessage
			if json.Unmarshal(out["Records"], &recs) == nil && len(recs) > 0 {
				out["MillisBehindLatest"] = json.RawMessage(strconv.Itoa(backlogMillis))
				body, _ = json.Marshal(out)
			}
		}
		for k, v := range rec.Header() {
			if k != "Content-Length" && k != "X-Amz-Crc32" { // the body may have changed
				w.Header()[k] = v
			}
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(body)
	})
}

// serveBehind serves s's MillisBehind as the daemon does, on a metrics
// endpoint of its own, and returns the /metrics URL.
func serveBehind(t *testing.T, s *Source) string {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	m := metrics.New(reg)
	m.SetBehindFunc(func() map[string]map[string]int64 {
		return map[string]map[string]int64{s.Stream(): s.MillisBehind()}
	})
	srv, err := metrics.Listen("127.0.0.1:0", reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return "http://" + srv.Addr().String() + "/metrics"
}

// scrapeBehind returns cdcflow_source_millis_behind_latest by shard from a
// /metrics scrape, failing on a series of another stream.
func scrapeBehind(t *testing.T, metricsURL, stream string) map[string]int64 {
	t.Helper()
	resp, err := http.Get(metricsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	got := map[string]int64{}
	fam := fams["cdcflow_source_millis_behind_latest"]
	if fam == nil {
		return got
	}
	for _, m := range fam.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["stream"] != stream || labels["shard"] == "" || len(labels) != 2 {
			t.Fatalf("series with labels %v, want stream=%q and a shard", labels, stream)
		}
		got[labels["shard"]] = int64(m.GetGauge().GetValue())
	}
	return got
}

// eventuallyBehind polls until cond holds for the scraped gauge, or fails
// after a minute showing the last scrape.
func eventuallyBehind(t *testing.T, what string, scrape func() map[string]int64, cond func(map[string]int64) bool) map[string]int64 {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		got := scrape()
		if cond(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: last scrape %v", what, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// allEqual reports whether m has exactly the keys of want, each valued v.
func allEqual(m map[string]int64, want []string, v int64) bool {
	if len(m) != len(want) {
		return false
	}
	for _, k := range want {
		if got, ok := m[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// TestMillisBehindMetric reads a 4-shard kinesalite stream and checks
// cdcflow_source_millis_behind_latest on /metrics: the value of each
// shard's last GetRecords while a backlog is fetched, 0 once caught up, and
// a split parent's series gone once the parent is finished, its children's
// present.
func TestMillisBehindMetric(t *testing.T) {
	srv := env(t)
	const stream = "behind"
	srv.CreateStream(t, stream, 4)
	cl := srv.Client()
	want := putRecords(t, cl, stream, shortData("b", 800), keyN)
	shardSet := map[string]bool{}
	for _, p := range want {
		shardSet[p.Shard] = true
	}
	shards := slices.Sorted(maps.Keys(shardSet))
	if len(shards) != 4 {
		t.Fatalf("records went to %d shards, want 4", len(shards))
	}
	target, _ := url.Parse(srv.Endpoint)
	proxy := httptest.NewServer(behindProxy(target))
	defer proxy.Close()
	o := testOptions(proxy.URL, stream)
	o.MaxBatchRecords = 50 // several GetRecords per shard
	s := newSource(t, o)
	murl := serveBehind(t, s)
	scrape := func() map[string]int64 { return scrapeBehind(t, murl, stream) }

	if got := scrape(); len(got) != 0 {
		t.Fatalf("series before any GetRecords: %v", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.startOnce(ctx); err != nil {
		t.Fatal(err)
	}
	// Nothing is read yet: each shard's reader holds its first response,
	// which had records.
	eventuallyBehind(t, "every shard behind by the backlog", scrape, func(m map[string]int64) bool {
		return allEqual(m, shards, backlogMillis)
	})

	checkExactlyOnce(t, stream, want, readN(t, s, len(want), nil))
	eventuallyBehind(t, "every shard caught up", scrape, func(m map[string]int64) bool {
		return allEqual(m, shards, 0)
	})

	parent := shards[0]
	if _, err := cl.SplitShard(ctx, &kinesis.SplitShardInput{
		StreamName: aws.String(stream), ShardToSplit: aws.String(parent),
		NewStartingHashKey: aws.String(splitMiddle(t, cl, stream, parent)),
	}); err != nil {
		t.Fatalf("split shard: %v", err)
	}
	if err := srv.WaitActive(ctx, stream); err != nil {
		t.Fatal(err)
	}
	final := eventuallyBehind(t, "the parent gone and its children caught up", scrape, func(m map[string]int64) bool {
		if _, ok := m[parent]; ok || len(m) != 5 {
			return false
		}
		for _, v := range m {
			if v != 0 {
				return false
			}
		}
		return true
	})
	if fin := s.Shards(); !fin[parent] {
		t.Errorf("Shards() = %v, want the parent finished", fin)
	}
	for id := range final {
		if s.Shards()[id] {
			t.Errorf("finished shard %s still in the gauge", id)
		}
	}
	if mb := s.MillisBehind(); !maps.Equal(mb, final) {
		t.Errorf("MillisBehind() = %v, /metrics = %v", mb, final)
	}
}

// splitMiddle returns the middle of a shard's hash key range.
func splitMiddle(t *testing.T, cl *kinesis.Client, stream, shard string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := cl.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String(stream)})
	if err != nil {
		t.Fatal(err)
	}
	for _, sh := range out.Shards {
		if aws.ToString(sh.ShardId) != shard {
			continue
		}
		lo, ok1 := new(big.Int).SetString(aws.ToString(sh.HashKeyRange.StartingHashKey), 10)
		hi, ok2 := new(big.Int).SetString(aws.ToString(sh.HashKeyRange.EndingHashKey), 10)
		if !ok1 || !ok2 {
			t.Fatalf("shard %s: bad hash key range %+v", shard, sh.HashKeyRange)
		}
		return lo.Add(lo, hi).Rsh(lo, 1).String()
	}
	t.Fatalf("shard %s not listed", shard)
	return ""
}

// TestMillisBehindLeases checks that a shard whose lease is given back (to
// balance with a second owner) leaves the first owner's MillisBehind, and
// that the two owners' gauges split the shards.
func TestMillisBehindLeases(t *testing.T) {
	srv := env(t)
	const stream = "behind-leased"
	srv.CreateStream(t, stream, 4)
	putRecords(t, srv.Client(), stream, shortData("l", 200), keyN)
	leaser := newMemLeaser()
	start := func(owner string) *Source {
		o := testOptions(srv.Endpoint, stream)
		o.Leases, o.Owner, o.LeaseTTL = leaser, owner, 600*time.Millisecond
		s := newSource(t, o)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := s.startOnce(ctx); err != nil {
			t.Fatal(err)
		}
		return s
	}
	owns := func(s *Source) []string {
		var ids []string
		for id := range s.Shards() {
			if s.Owns(id) {
				ids = append(ids, id)
			}
		}
		slices.Sort(ids)
		return ids
	}
	a := start("a")
	eventuallyBehind(t, "a polling 4 shards", a.MillisBehind, func(m map[string]int64) bool { return len(m) == 4 })
	b := start("b")
	eventuallyBehind(t, "a down to 2 shards", a.MillisBehind, func(m map[string]int64) bool { return len(m) == 2 })
	eventuallyBehind(t, "b polling 2 shards", b.MillisBehind, func(m map[string]int64) bool { return len(m) == 2 })
	ka, kb := slices.Sorted(maps.Keys(a.MillisBehind())), slices.Sorted(maps.Keys(b.MillisBehind()))
	if !slices.Equal(ka, owns(a)) || !slices.Equal(kb, owns(b)) {
		t.Errorf("gauge shards a %v b %v; owned a %v b %v", ka, kb, owns(a), owns(b))
	}
	if both := slices.Concat(ka, kb); len(slices.Compact(slices.Sorted(slices.Values(both)))) != 4 {
		t.Errorf("a %v and b %v do not split the 4 shards", ka, kb)
	}
}
