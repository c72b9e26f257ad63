package change

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
)

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}

// TestCompareOrderMatchesKey checks the invariant sinks rely on: sorting by
// Order.Key bytes (as SQL does) gives the same order as CompareOrder.
func TestCompareOrderMatchesKey(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	seqs := []string{"", "0", "05", "0210", "0299", "0310", "mysql-bin.000003:03123:0210", "mysql-bin.000003:03123", "mysql-bin.000004:0210:0210", "00000027:00000758:0005"}
	times := []int64{0, 1, 9, 10, 99, 100, 1705318200000000000, 1705318200000000001, -5}
	gen := func() Order {
		return Order{CommitNS: times[rng.IntN(len(times))], Seq: seqs[rng.IntN(len(seqs))], LogFirst: rng.IntN(2) == 0}
	}
	for i := 0; i < 20000; i++ {
		a, b := gen(), gen()
		got := sign(CompareOrder(a, b))
		want := sign(strings.Compare(a.Key(), b.Key()))
		if got != want {
			t.Fatalf("CompareOrder(%+v, %+v) = %d, Key order %d (%q vs %q)", a, b, got, want, a.Key(), b.Key())
		}
	}
}

func TestSortableUintOrder(t *testing.T) {
	nums := []uint64{0, 1, 9, 10, 11, 99, 100, 1 << 32, 1<<63 - 1, 1<<64 - 1}
	for i := range nums {
		for j := range nums {
			got := sign(strings.Compare(SortableUint(nums[i]), SortableUint(nums[j])))
			want := 0
			if nums[i] < nums[j] {
				want = -1
			} else if nums[i] > nums[j] {
				want = 1
			}
			if got != want {
				t.Errorf("SortableUint(%d) vs (%d): %d, want %d", nums[i], nums[j], got, want)
			}
		}
	}
	if got := SortableUint(42); got != "0242" {
		t.Errorf("SortableUint(42) = %q, want 0242", got)
	}
}

func TestSortableDecimal(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{"42", "0242", true},
		{"0042", "0242", true},
		{"0", "010", true},
		{"49590338271490256608559692538361571095921575989136588898", "5649590338271490256608559692538361571095921575989136588898", true},
		{"12a", "", false},
		{"-1", "", false},
	}
	for _, tt := range tests {
		got, ok := SortableDecimal(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("SortableDecimal(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestLogFirstBeatsCommitTime(t *testing.T) {
	// A snapshot read taken late (ts later) at an earlier log position is
	// older than a change streamed after the snapshot point.
	snapshot := Order{CommitNS: 2000, Seq: SortableUint(100), LogFirst: true}
	streamed := Order{CommitNS: 1000, Seq: SortableUint(200), LogFirst: true}
	if CompareOrder(snapshot, streamed) >= 0 {
		t.Fatal("snapshot row at an earlier LSN must be older than a later streamed change")
	}
	plain := Order{CommitNS: 2000}
	if CompareOrder(Order{CommitNS: 1000}, plain) >= 0 {
		t.Fatal("commit time decides when there is no log position")
	}
}

func TestRecordID(t *testing.T) {
	tests := []struct {
		name   string
		cols   []string
		values []string
		want   string
		reason string
	}{
		{"int", []string{"id"}, []string{`1001`}, "1001", ""},
		{"number as written", []string{"id"}, []string{`1.50`}, "1.50", ""},
		{"string unquoted", []string{"id"}, []string{`"abc"`}, "abc", ""},
		{"escaped string", []string{"id"}, []string{`"a\"b\u00e9"`}, `a"bé`, ""},
		{"composite", []string{"order_id", "line"}, []string{`1001`, `42`}, "[1001,42]", ""},
		{"composite mixed", []string{"a", "b"}, []string{`"x"`, ` 7 `}, `["x",7]`, ""},
		{"composite object compacted", []string{"a", "b"}, []string{`1`, `{ "k" : 1 }`}, `[1,{"k":1}]`, ""},
		{"null", []string{"id"}, []string{`null`}, "", ReasonMissingKey},
		{"missing", []string{"a", "b"}, []string{`1`, ``}, "", ReasonMissingKey},
		{"bool", []string{"flag"}, []string{`true`}, "true", ""},
		{"empty string", []string{"id"}, []string{`""`}, "", ReasonMissingKey},
		{"empty string in composite", []string{"a", "b"}, []string{`""`, `1`}, `["",1]`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vals := make([]json.RawMessage, len(tt.values))
			for i, v := range tt.values {
				if v != "" {
					vals[i] = json.RawMessage(v)
				}
			}
			got, err := RecordID(tt.cols, vals)
			if tt.reason != "" {
				p, ok := err.(*Poison)
				if !ok || p.Reason != tt.reason {
					t.Fatalf("err = %v, want poison %s", err, tt.reason)
				}
				if !strings.Contains(p.Error(), tt.cols[len(tt.cols)-1]) && !strings.Contains(p.Error(), tt.cols[0]) {
					t.Errorf("error %q does not name the column", p.Error())
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("RecordID = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestPosition(t *testing.T) {
	tests := []struct {
		p    Position
		want string
	}{
		{Position{Source: "a.ndjson", Offset: "42"}, "a.ndjson:42"},
		{Position{Source: "a.json", Offset: "3", Index: 5, Indexed: true}, "a.json:3#5"},
		{Position{Source: "orders", Partition: "3", Offset: "1234"}, "orders[3]@1234"},
	}
	for _, tt := range tests {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
	a := Position{Source: "f", Offset: "9"}
	b := Position{Source: "f", Offset: "10"}
	if ComparePosition(a, b) >= 0 || strings.Compare(a.Sortable(), b.Sortable()) >= 0 {
		t.Error("offset 9 must sort before 10, numerically and as Sortable bytes")
	}
	c := Position{Source: "f", Offset: "9", Index: 0, Indexed: true}
	if ComparePosition(a, c) >= 0 || strings.Compare(a.Sortable(), c.Sortable()) >= 0 {
		t.Error("an envelope's records sort after the plain record at the same offset")
	}
}

func TestKeysFor(t *testing.T) {
	k := &Keys{Tables: map[string][]string{"orders": {"order_id"}, "sales.orders": {"sale_id"}}}
	if got := k.For("public", "orders"); got[0] != "order_id" {
		t.Errorf("public.orders -> %v", got)
	}
	if got := k.For("sales", "orders"); got[0] != "sale_id" {
		t.Errorf("sales.orders -> %v", got)
	}
	if got := k.For("", "other"); got[0] != "id" {
		t.Errorf("default -> %v", got)
	}
	var nilKeys *Keys
	if got := nilKeys.For("", "x"); got[0] != "id" {
		t.Errorf("nil keys -> %v", got)
	}
}
