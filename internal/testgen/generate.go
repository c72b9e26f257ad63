package testgen

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"
)

// Options shape a generated history. The zero value gives a small history
// with every kind of change; negative values switch a feature off where noted.
type Options struct {
	Changes      int       // row changes after the snapshot; 0 means 1000
	Keys         int       // distinct keys over all tables (approximately); 0 means max(Changes/5, 40)
	SnapshotRows int       // rows read by an initial snapshot transaction (KindSnapshot), at most half the key space; 0 means none
	MaxTxSize    int       // most changes in one transaction; 0 means 4
	RepeatInTx   float64   // chance that a change touches a key already changed in its transaction; 0 means 0.05, negative never
	WideColumns  int       // columns of wide_metrics besides id and updated_at; 0 means 60, negative drops the table
	BigRatio     float64   // chance that a customers or orders row gets a large text value; 0 means 0.01, negative never
	BigBytes     int       // size of large text values; 0 means 3000
	Start        time.Time // commit time of the first transaction; zero means 2024-01-01T00:00:00Z
}

// withDefaults fills in zero fields.
func (o Options) withDefaults() Options {
	if o.Changes <= 0 {
		o.Changes = 1000
	}
	if o.Keys <= 0 {
		o.Keys = max(o.Changes/5, 40)
	}
	if o.MaxTxSize <= 0 {
		o.MaxTxSize = 4
	}
	if o.RepeatInTx == 0 {
		o.RepeatInTx = 0.05
	}
	if o.WideColumns == 0 {
		o.WideColumns = 60
	}
	if o.BigRatio == 0 {
		o.BigRatio = 0.01
	}
	if o.BigBytes <= 0 {
		o.BigBytes = 3000
	}
	if o.Start.IsZero() {
		o.Start = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	return o
}

// Generate returns the history for seed and opts. The same arguments always
// give the same history.
func Generate(seed int64, opts Options) *History {
	g := NewGenerator(seed, opts)
	h := &History{Seed: seed, Options: g.opts, Tables: g.tables}
	for {
		tx := g.Next()
		if tx == nil {
			return h
		}
		h.events = append(h.events, tx...)
	}
}

// Generator produces a history one transaction at a time, keeping only the
// current row of each key: memory is bounded by the key space, not the
// number of changes. Generate collects its output.
type Generator struct {
	opts   Options
	rng    *rand.Rand
	tables []*Table
	specs  []*keySpace
	total  int // weight sum
	tx     int64
	seq    int64
	commit int64
	done   int // changes generated, snapshot excluded
	snap   bool

	// Nested JSON values are drawn from pools made once per generator:
	// rows are immutable, so they can share them, and generation stays fast.
	profiles, shippings, attrs []any
}

// keySpace is the dense set of keys one table can use: key i is keyAt(i).
type keySpace struct {
	t      *Table
	weight int
	keyAt  func(i int) []any
	newRow func(g *Generator, key []any, ts string) []any
	update func(g *Generator, old []any, ts string) []any
	slots  []slot
}

type slot struct {
	row  []any  // nil when absent
	key  []any  // the key values, computed on first use
	id   string // the record_id of key
	seen bool   // the key existed once
}

// keyOf returns key i of s and its record_id, computing them once.
func (s *keySpace) keyOf(i int) ([]any, string) {
	sl := &s.slots[i]
	if sl.key == nil {
		sl.key = s.keyAt(i)
		sl.id = RecordID(sl.key)
	}
	return sl.key, sl.id
}

// NewGenerator starts the history for seed and opts.
func NewGenerator(seed int64, opts Options) *Generator {
	o := opts.withDefaults()
	g := &Generator{
		opts:   o,
		rng:    rand.New(rand.NewPCG(uint64(seed), 0x7e57_6e6e)),
		tables: defaultTables(o.WideColumns),
	}
	g.commit = o.Start.UnixNano() + g.rng.Int64N(1000)
	for range 128 {
		g.profiles = append(g.profiles, randomProfile(g.rng))
		g.shippings = append(g.shippings, randomShipping(g.rng))
		g.attrs = append(g.attrs, randomAttrs(g.rng))
	}
	k := o.Keys
	nOrders := max(k*4/10, 2)
	nItems := max(k*3/10, 3)
	nCust := max(k*2/10, 2)
	nWide := max(k/10, 2)
	for _, t := range g.tables {
		var s *keySpace
		switch t.Name {
		case TableCustomers:
			s = &keySpace{weight: 25, keyAt: func(i int) []any { return []any{customerID(i)} }, newRow: newCustomer, update: updateCustomer}
			s.slots = make([]slot, nCust)
		case TableOrders:
			s = &keySpace{weight: 35, keyAt: func(i int) []any { return []any{num(int64(1000 + i))} }, newRow: newOrder, update: updateOrder}
			s.slots = make([]slot, nOrders)
		case TableOrderItems:
			s = &keySpace{weight: 30, keyAt: func(i int) []any { return []any{num(int64(1000 + i/3)), num(int64(1 + i%3))} }, newRow: newItem, update: updateItem}
			s.slots = make([]slot, nItems)
		case TableWide:
			s = &keySpace{weight: 4, keyAt: func(i int) []any { return []any{num(9007199254740993 + int64(i))} }, newRow: newWide, update: updateWide}
			s.slots = make([]slot, nWide)
		}
		s.t = t
		g.specs = append(g.specs, s)
		g.total += s.weight
	}
	return g
}

// Tables returns the generated schema.
func (g *Generator) Tables() []*Table { return g.tables }

// Options returns the options with defaults filled in.
func (g *Generator) Options() Options { return g.opts }

// customerID gives most customers plain ids and every 50th one an id with
// characters that break naive quoting.
func customerID(i int) string {
	id := fmt.Sprintf("c-%06d", i)
	if i%50 == 0 {
		id += []string{"-ü", `-"q"`, `-back\slash`, " space", "-🚀", "-日本"}[(i/50)%6]
	}
	return id
}

func (g *Generator) pickSpace() *keySpace {
	n := g.rng.IntN(g.total)
	for _, s := range g.specs {
		if n < s.weight {
			return s
		}
		n -= s.weight
	}
	return g.specs[len(g.specs)-1]
}

type ref struct {
	s *keySpace
	i int
}

// Next returns the next transaction's events, or nil when the history is
// complete. The slice is fresh; rows in it are shared and must not be
// modified.
func (g *Generator) Next() []Event {
	if !g.snap {
		g.snap = true
		if g.opts.SnapshotRows > 0 {
			return g.finishTx(g.snapshot())
		}
	}
	if g.done >= g.opts.Changes {
		return nil
	}
	size := min(1+g.rng.IntN(g.opts.MaxTxSize), g.opts.Changes-g.done)
	ts := timestamp(g.nextCommit())
	evs := make([]Event, 0, size+1)
	var touched []ref
	for len(evs) < size {
		var r ref
		if len(touched) > 0 && g.rng.Float64() < g.opts.RepeatInTx {
			r = touched[g.rng.IntN(len(touched))]
		} else {
			r.s = g.pickSpace()
			r.i = g.rng.IntN(len(r.s.slots))
		}
		sl := &r.s.slots[r.i]
		switch {
		case sl.row == nil:
			kind := KindInsert
			if sl.seen {
				kind = KindReinsert
			}
			key, _ := r.s.keyOf(r.i)
			evs = append(evs, g.set(r, kind, r.s.newRow(g, key, ts)))
		case g.roll(0.70):
			evs = append(evs, g.set(r, KindUpdate, r.s.update(g, sl.row, ts)))
		case g.roll(0.5) || size-len(evs) < 2:
			evs = append(evs, g.set(r, KindDelete, nil))
		default:
			to, ok := g.freeKey(r.s)
			if !ok {
				evs = append(evs, g.set(r, KindUpdate, r.s.update(g, sl.row, ts)))
				break
			}
			row := r.s.update(g, sl.row, ts)
			newKey, _ := r.s.keyOf(to.i)
			for n, c := range r.s.t.KeyIndexes() {
				row[c] = newKey[n]
			}
			evs = append(evs, g.set(r, KindKeyDelete, nil))
			kind := KindKeyInsert
			evs = append(evs, g.set(to, kind, row))
			touched = append(touched, to)
		}
		touched = append(touched, r)
	}
	g.done += len(evs)
	return g.finishTx(evs)
}

func (g *Generator) roll(p float64) bool { return g.rng.Float64() < p }

// freeKey finds an absent key of s, for a primary-key change.
func (g *Generator) freeKey(s *keySpace) (ref, bool) {
	for range 16 {
		i := g.rng.IntN(len(s.slots))
		if s.slots[i].row == nil {
			return ref{s, i}, true
		}
	}
	return ref{}, false
}

// set records the change of r's key to row (nil: delete) and returns the
// event, without its transaction fields.
func (g *Generator) set(r ref, kind Kind, row []any) Event {
	key, id := r.s.keyOf(r.i)
	sl := &r.s.slots[r.i]
	e := Event{Table: r.s.t, Kind: kind, Op: kind.Op(), Key: key, RecordID: id, Before: sl.row, After: row}
	if kind == KindInsert || kind == KindReinsert || kind == KindKeyInsert || kind == KindSnapshot {
		e.Before = nil
	}
	sl.row = row
	sl.seen = true
	return e
}

// nextCommit advances the commit clock: at least 1ms plus a microsecond per
// change of the previous transaction, so per-change microsecond timestamps
// (DMS) never reach the next transaction and millisecond ones never tie.
func (g *Generator) nextCommit() int64 {
	if g.tx > 0 {
		g.commit += int64(time.Millisecond) + g.rng.Int64N(int64(4*time.Millisecond)) + g.rng.Int64N(1000)
	}
	return g.commit
}

func (g *Generator) finishTx(evs []Event) []Event {
	g.tx++
	for i := range evs {
		g.seq++
		evs[i].Tx, evs[i].TxIndex, evs[i].TxSize, evs[i].CommitNS, evs[i].Seq = g.tx, i, len(evs), g.commit, g.seq
	}
	// The next commit must leave room for one microsecond per change.
	g.commit += int64(len(evs)) * int64(time.Microsecond)
	return evs
}

// snapshot reads SnapshotRows distinct absent keys in one transaction.
func (g *Generator) snapshot() []Event {
	ts := timestamp(g.nextCommit())
	capacity := 0
	for _, s := range g.specs {
		capacity += len(s.slots)
	}
	n := min(g.opts.SnapshotRows, capacity/2)
	evs := make([]Event, 0, n)
	for len(evs) < n {
		r := ref{s: g.pickSpace()}
		r.i = g.rng.IntN(len(r.s.slots))
		if r.s.slots[r.i].row != nil {
			continue
		}
		key, _ := r.s.keyOf(r.i)
		evs = append(evs, g.set(r, KindSnapshot, r.s.newRow(g, key, ts)))
	}
	return evs
}

// Final returns the state after every transaction returned so far.
func (g *Generator) Final() State {
	s := State{}
	for _, sp := range g.specs {
		for i := range sp.slots {
			if row := sp.slots[i].row; row != nil {
				if s[sp.t.Name] == nil {
					s[sp.t.Name] = map[string]map[string]any{}
				}
				_, id := sp.keyOf(i)
				s[sp.t.Name][id] = rowMap(sp.t, row)
			}
		}
	}
	return s
}

// Live returns the number of live rows.
func (g *Generator) Live() int {
	n := 0
	for _, sp := range g.specs {
		for i := range sp.slots {
			if sp.slots[i].row != nil {
				n++
			}
		}
	}
	return n
}

func (g *Generator) maybeBig(short func() any) any {
	if g.opts.BigRatio > 0 && g.roll(g.opts.BigRatio) {
		return bigText(g.rng, g.opts.BigBytes)
	}
	return short()
}

func newCustomer(g *Generator, key []any, ts string) []any {
	r := g.rng
	return []any{
		key[0],
		randomText(r),
		g.nullable(0.2, func() any { return fmt.Sprintf("user%d@example.com", r.IntN(100000)) }),
		r.IntN(5) == 0,
		decimal(r.Int64N(2000000)-100000, 2),
		ts, ts,
		g.nullable(0.2, func() any { return pick(r, g.profiles) }),
		randomTags(r),
		g.maybeBig(func() any { return g.nullable(0.5, func() any { return pick(r, tricky) }) }),
	}
}

func updateCustomer(g *Generator, old []any, ts string) []any {
	r := g.rng
	row := append([]any(nil), old...)
	for range 1 + r.IntN(3) {
		switch r.IntN(7) {
		case 0:
			row[1] = randomText(r)
		case 1:
			row[2] = g.nullable(0.3, func() any { return fmt.Sprintf("user%d@example.org", r.IntN(100000)) })
		case 2:
			row[3] = !row[3].(bool)
		case 3:
			row[4] = decimal(r.Int64N(2000000)-100000, 2)
		case 4:
			row[7] = g.nullable(0.2, func() any { return pick(r, g.profiles) })
		case 5:
			row[8] = randomTags(r)
		case 6:
			row[9] = g.maybeBig(func() any { return g.nullable(0.5, func() any { return randomText(r) }) })
		}
	}
	row[6] = ts
	return row
}

func newOrder(g *Generator, key []any, ts string) []any {
	r := g.rng
	return []any{
		key[0],
		customerID(r.IntN(max(g.opts.Keys*2/10, 2))),
		"new",
		decimal(r.Int64N(100000), 2),
		num(1 + r.Int64N(20)),
		false,
		g.nullable(0.5, func() any { return bigRef(r) }),
		g.nullable(0.6, func() any { return decimal(-r.Int64N(5000), 2) }),
		ts, ts,
		pick(r, g.shippings),
		g.maybeBig(func() any { return g.nullable(0.6, func() any { return randomText(r) }) }),
	}
}

func updateOrder(g *Generator, old []any, ts string) []any {
	r := g.rng
	row := append([]any(nil), old...)
	row[2] = pick(r, statuses)
	for range r.IntN(3) {
		switch r.IntN(6) {
		case 0:
			row[3] = decimal(r.Int64N(100000), 2)
		case 1:
			row[4] = num(1 + r.Int64N(20))
		case 2:
			row[5] = !row[5].(bool)
		case 3:
			row[7] = g.nullable(0.5, func() any { return decimal(-r.Int64N(5000), 2) })
		case 4:
			row[10] = pick(r, g.shippings)
		case 5:
			row[11] = g.maybeBig(func() any { return g.nullable(0.5, func() any { return randomText(r) }) })
		}
	}
	row[9] = ts
	return row
}

func newItem(g *Generator, key []any, ts string) []any {
	r := g.rng
	return []any{key[0], key[1], "SKU-" + strconv.Itoa(r.IntN(10000)), num(1 + r.Int64N(9)), decimal(r.Int64N(100000), 2), r.IntN(10) == 0, pick(r, g.attrs), ts}
}

func updateItem(g *Generator, old []any, ts string) []any {
	r := g.rng
	row := append([]any(nil), old...)
	switch r.IntN(4) {
	case 0:
		row[3] = num(r.Int64N(10))
	case 1:
		row[4] = decimal(r.Int64N(100000), 2)
	case 2:
		row[5] = !row[5].(bool)
	case 3:
		row[6] = pick(r, g.attrs)
	}
	row[7] = ts
	return row
}

func newWide(g *Generator, key []any, ts string) []any {
	t := g.specs[len(g.specs)-1].t
	row := make([]any, len(t.Columns))
	row[0] = key[0]
	for i := 1; i < len(row)-1; i++ {
		row[i] = g.wideValue(t.Columns[i])
	}
	row[len(row)-1] = ts
	return row
}

func updateWide(g *Generator, old []any, ts string) []any {
	t := g.specs[len(g.specs)-1].t
	row := append([]any(nil), old...)
	if len(row) > 2 {
		for range 1 + g.rng.IntN(5) {
			i := 1 + g.rng.IntN(len(row)-2)
			row[i] = g.wideValue(t.Columns[i])
		}
	}
	row[len(row)-1] = ts
	return row
}

func (g *Generator) wideValue(c Column) any {
	r := g.rng
	if c.Nullable && r.IntN(4) == 0 {
		return nil
	}
	switch c.Type {
	case Int:
		return num(r.Int64N(1<<31) - 1<<30)
	case BigInt:
		return num(r.Int64() - 1<<62)
	case Decimal:
		return decimal(r.Int64N(1e9)-5e8, c.Scale)
	case Text:
		return randomText(r)
	case Bool:
		return r.IntN(2) == 0
	case Timestamp, TimestampMicros:
		return randomTime(r)
	}
	return nil
}

// nullable returns nil with probability p, else v().
func (g *Generator) nullable(p float64, v func() any) any {
	if g.roll(p) {
		return nil
	}
	return v()
}
