package testgen

// A deliberately small, strict reference decoder for the four formats. It
// checks the exact shape of every record and orders changes by the fields
// each format documents, so the tests prove that the encoders' output alone
// reproduces the history.

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/cdcflow/cdcflow/internal/change"
)

type refEvent struct {
	table string
	rid   string
	order string // byte order is commit order
	del   bool
	image map[string]any
}

type refDecoder struct {
	f      Format
	keys   map[string][]string
	chunks map[string]*chunkSet
	seen   map[string]int // DSQL fragments: chunk_id/index -> times seen
}

type chunkSet struct {
	main   []byte
	n      int
	pieces map[int]string
}

func newRefDecoder(f Format, keys map[string][]string) *refDecoder {
	return &refDecoder{f: f, keys: keys, chunks: map[string]*chunkSet{}, seen: map[string]int{}}
}

// decode returns the events of one record (none for skipped records and
// pending fragments).
func (d *refDecoder) decode(data []byte) ([]refEvent, error) {
	if !json.Valid(data) {
		return nil, fmt.Errorf("invalid JSON: %.80s", data)
	}
	switch d.f {
	case FormatDSQL:
		return d.dsql(data)
	case FormatDebezium:
		return d.debezium(data)
	case FormatDMS:
		return d.dms(data)
	case FormatDynamoDB:
		return d.dynamodb(data)
	}
	return nil, fmt.Errorf("unknown format %s", d.f)
}

func useNumber(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	return dec.Decode(v)
}

// fields decodes an object and checks that its members are exactly want.
func fields(data []byte, want ...string) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	got := make([]string, 0, len(m))
	for k := range m {
		got = append(got, k)
	}
	slices.Sort(got)
	want = slices.Clone(want)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		return nil, fmt.Errorf("members %v, want %v in %.120s", got, want, data)
	}
	return m, nil
}

func str(raw json.RawMessage) string {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		panic(fmt.Sprintf("not a string: %s", raw))
	}
	return s
}

func integer(raw json.RawMessage) int64 {
	var n int64
	if err := json.Unmarshal(raw, &n); err != nil {
		panic(fmt.Sprintf("not an integer: %s", raw))
	}
	return n
}

func isNull(raw json.RawMessage) bool { return string(raw) == "null" }

// rid computes the record_id with change.RecordID from the raw key values.
func (d *refDecoder) rid(table string, raw map[string]json.RawMessage) (string, error) {
	cols := d.keys[table]
	vals := make([]json.RawMessage, len(cols))
	for i, c := range cols {
		vals[i] = raw[c]
	}
	return change.RecordID(cols, vals)
}

func rawMembers(data []byte) map[string]json.RawMessage {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		panic(err)
	}
	return m
}

func imageOf(data []byte) map[string]any {
	var m map[string]any
	if err := useNumber(data, &m); err != nil {
		panic(err)
	}
	return m
}

func order2(a, b int64) string { return fmt.Sprintf("%020d|%020d", a, b) }

var dsqlSourceFields = []string{"version", "ts_ms", "ts_ns", "txId", "schema", "table", "db", "cluster"}

func (d *refDecoder) dsql(data []byte) ([]refEvent, error) {
	var typ struct{ Type string }
	if err := json.Unmarshal(data, &typ); err != nil {
		return nil, err
	}
	switch typ.Type {
	case "fragment":
		m, err := fields(data, "type", "chunk_id", "index", "data")
		if err != nil {
			return nil, err
		}
		id, idx := str(m["chunk_id"]), int(integer(m["index"]))
		cs := d.chunk(id)
		if old, ok := cs.pieces[idx]; ok && old != str(m["data"]) {
			return nil, fmt.Errorf("fragment %s/%d delivered with different data", id, idx)
		}
		cs.pieces[idx] = str(m["data"])
		return d.complete(id)
	case "chunked":
		m, err := fields(data, "type", "op", "before", "after", "chunked", "source", "ts_ms", "ts_ns")
		if err != nil {
			return nil, err
		}
		c, err := fields(m["chunked"], "chunk_id", "fragments", "field")
		if err != nil {
			return nil, err
		}
		if str(c["field"]) != "after" || !isNull(m["after"]) {
			return nil, fmt.Errorf("chunked record: field %s, after %s", c["field"], m["after"])
		}
		cs := d.chunk(str(c["chunk_id"]))
		cs.main, cs.n = data, int(integer(c["fragments"]))
		return d.complete(str(c["chunk_id"]))
	case "full":
		return d.dsqlFull(data, nil)
	}
	return nil, fmt.Errorf("dsql type %q", typ.Type)
}

func (d *refDecoder) chunk(id string) *chunkSet {
	cs := d.chunks[id]
	if cs == nil {
		cs = &chunkSet{pieces: map[int]string{}}
		d.chunks[id] = cs
	}
	return cs
}

func (d *refDecoder) complete(id string) ([]refEvent, error) {
	cs := d.chunks[id]
	if cs.main == nil || len(cs.pieces) < cs.n {
		return nil, nil
	}
	var after strings.Builder
	for i := range cs.n {
		after.WriteString(cs.pieces[i])
	}
	main := cs.main
	cs.main = nil // a duplicate main record completes the set again
	return d.dsqlFull(main, []byte(after.String()))
}

func (d *refDecoder) dsqlFull(data, after []byte) ([]refEvent, error) {
	want := []string{"type", "op", "before", "after", "source", "ts_ms", "ts_ns"}
	if after != nil {
		want = append(want, "chunked")
	}
	m, err := fields(data, want...)
	if err != nil {
		return nil, err
	}
	src, err := fields(m["source"], dsqlSourceFields...)
	if err != nil {
		return nil, err
	}
	if after == nil {
		after = m["after"]
	}
	table := str(src["table"])
	e := refEvent{table: table, order: order2(integer(src["ts_ns"]), integer(m["ts_ns"]))}
	var keyRaw map[string]json.RawMessage
	switch op := str(m["op"]); op {
	case "d":
		if !isNull(after) {
			return nil, fmt.Errorf("dsql delete with after")
		}
		keyRaw = rawMembers(m["before"])
		if len(keyRaw) != len(d.keys[table]) {
			return nil, fmt.Errorf("dsql delete before has %d members, want only the key", len(keyRaw))
		}
		e.del = true
	case "c", "u":
		if !isNull(m["before"]) {
			return nil, fmt.Errorf("dsql %s with before", op)
		}
		keyRaw = rawMembers(after)
		e.image = imageOf(after)
	default:
		return nil, fmt.Errorf("dsql op %q", op)
	}
	e.rid, err = d.rid(table, keyRaw)
	return []refEvent{e}, err
}

var debeziumSourceFields = []string{"version", "connector", "name", "ts_ms", "ts_us", "ts_ns", "snapshot", "db", "sequence", "schema", "table", "txId", "lsn", "xmin"}

type connectField struct {
	Type       string
	Name       string
	Field      string
	Optional   bool
	Parameters map[string]string
	Fields     []connectField
}

func (d *refDecoder) debezium(data []byte) ([]refEvent, error) {
	if string(data) == "null" {
		return nil, nil // tombstone
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, err
	}
	payload := data
	var after []connectField
	if _, ok := top["payload"]; ok {
		m, err := fields(data, "schema", "payload")
		if err != nil {
			return nil, err
		}
		var s connectField
		if err := json.Unmarshal(m["schema"], &s); err != nil {
			return nil, err
		}
		for _, f := range s.Fields {
			if f.Field == "after" {
				after = f.Fields
			}
		}
		if after == nil {
			return nil, fmt.Errorf("debezium schema without after")
		}
		payload = m["payload"]
	}
	m, err := fields(payload, "before", "after", "source", "transaction", "op", "ts_ms", "ts_us", "ts_ns")
	if err != nil {
		return nil, err
	}
	src, err := fields(m["source"], debeziumSourceFields...)
	if err != nil {
		return nil, err
	}
	table := str(src["table"])
	e := refEvent{table: table, order: order2(integer(src["lsn"]), integer(src["ts_ns"]))}
	img := m["after"]
	switch op := str(m["op"]); op {
	case "d":
		if !isNull(m["after"]) || isNull(m["before"]) {
			return nil, fmt.Errorf("debezium delete needs before and no after")
		}
		img, e.del = m["before"], true
	case "c", "r":
		if !isNull(m["before"]) {
			return nil, fmt.Errorf("debezium %s with before", op)
		}
	case "u":
		if isNull(m["before"]) {
			return nil, fmt.Errorf("debezium update without before")
		}
	default:
		return nil, fmt.Errorf("debezium op %q", op)
	}
	raw := rawMembers(img)
	if e.rid, err = d.rid(table, raw); err != nil {
		return nil, err
	}
	e.image = imageOf(img)
	for _, f := range after {
		v := e.image[f.Field]
		if v == nil {
			continue
		}
		switch f.Name {
		case "org.apache.kafka.connect.data.Decimal":
			e.image[f.Field] = fromConnectDecimal(v.(string), f.Parameters["scale"])
		case "io.debezium.data.Json":
			if !json.Valid([]byte(v.(string))) {
				return nil, fmt.Errorf("Json column %s is not JSON text", f.Field)
			}
		case "io.debezium.time.MicroTimestamp":
			us, err := v.(json.Number).Int64()
			if err != nil {
				return nil, err
			}
			e.image[f.Field] = time.UnixMicro(us).UTC().Format("2006-01-02T15:04:05.000000Z")
		}
	}
	if e.del {
		e.image = nil
	}
	return []refEvent{e}, nil
}

func fromConnectDecimal(b64, scale string) json.Number {
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		panic(err)
	}
	n := new(big.Int).SetBytes(b)
	if len(b) > 0 && b[0]&0x80 != 0 {
		n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(8*len(b))))
	}
	var sc int
	fmt.Sscan(scale, &sc)
	return decimal(n.Int64(), sc)
}

func (d *refDecoder) dms(data []byte) ([]refEvent, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, err
	}
	if _, ok := top["control"]; ok {
		m, err := fields(data, "control", "metadata")
		if err != nil {
			return nil, err
		}
		var md struct {
			RecordType string `json:"record-type"`
		}
		if err := json.Unmarshal(m["metadata"], &md); err != nil || md.RecordType != "control" {
			return nil, fmt.Errorf("dms control record type %q", md.RecordType)
		}
		return nil, nil
	}
	m, err := fields(data, "data", "metadata")
	if err != nil {
		return nil, err
	}
	var md map[string]json.RawMessage
	if err := json.Unmarshal(m["metadata"], &md); err != nil {
		return nil, err
	}
	op := str(md["operation"])
	want := []string{"timestamp", "record-type", "operation", "partition-key-type", "schema-name", "table-name", "transaction-id"}
	if op == "load" {
		want = want[:len(want)-1]
	}
	if _, err := fields(m["metadata"], want...); err != nil {
		return nil, err
	}
	ts := str(md["timestamp"])
	if _, err := time.Parse(DMSTimestampLayout, ts); err != nil {
		return nil, err
	}
	table := str(md["table-name"])
	e := refEvent{table: table, order: ts}
	switch op {
	case "delete":
		e.del = true
	case "insert", "update", "load":
		e.image = imageOf(m["data"])
	default:
		return nil, fmt.Errorf("dms operation %q", op)
	}
	e.rid, err = d.rid(table, rawMembers(m["data"]))
	return []refEvent{e}, err
}

func (d *refDecoder) dynamodb(data []byte) ([]refEvent, error) {
	m, err := fields(data, "eventID", "eventName", "eventVersion", "eventSource", "awsRegion", "dynamodb", "eventSourceARN")
	if err != nil {
		return nil, err
	}
	name := str(m["eventName"])
	want := []string{"ApproximateCreationDateTime", "Keys", "SequenceNumber", "SizeBytes", "StreamViewType"}
	switch name {
	case "INSERT":
		want = append(want, "NewImage")
	case "MODIFY":
		want = append(want, "NewImage", "OldImage")
	case "REMOVE":
		want = append(want, "OldImage")
	default:
		return nil, fmt.Errorf("dynamodb eventName %q", name)
	}
	db, err := fields(m["dynamodb"], want...)
	if err != nil {
		return nil, err
	}
	arn := str(m["eventSourceARN"])
	_, rest, _ := strings.Cut(arn, ":table/")
	table, _, _ := strings.Cut(rest, "/stream/")
	seq := str(db["SequenceNumber"])
	if len(seq) != 21 {
		return nil, fmt.Errorf("dynamodb SequenceNumber %q is not 21 digits", seq)
	}
	e := refEvent{table: table, order: fmt.Sprintf("%020d|%s", integer(db["ApproximateCreationDateTime"]), seq)}
	keys, err := fromItem(db["Keys"])
	if err != nil {
		return nil, err
	}
	raw := map[string]json.RawMessage{}
	for k, v := range keys {
		raw[k], _ = json.Marshal(v)
	}
	if e.rid, err = d.rid(table, raw); err != nil {
		return nil, err
	}
	if name == "REMOVE" {
		e.del = true
	} else if e.image, err = fromItem(db["NewImage"]); err != nil {
		return nil, err
	}
	return []refEvent{e}, nil
}

func fromItem(raw json.RawMessage) (map[string]any, error) {
	var item map[string]json.RawMessage
	if err := json.Unmarshal(raw, &item); err != nil {
		return nil, err
	}
	out := make(map[string]any, len(item))
	for k, v := range item {
		a, err := fromAttr(v)
		if err != nil {
			return nil, fmt.Errorf("attribute %s: %w", k, err)
		}
		out[k] = a
	}
	return out, nil
}

func fromAttr(raw json.RawMessage) (any, error) {
	var a map[string]json.RawMessage
	if err := json.Unmarshal(raw, &a); err != nil {
		return nil, err
	}
	if len(a) != 1 {
		return nil, fmt.Errorf("attribute with %d types", len(a))
	}
	for t, v := range a {
		switch t {
		case "S":
			return str(v), nil
		case "N":
			return json.Number(str(v)), nil
		case "BOOL":
			return string(v) == "true", nil
		case "NULL":
			return nil, nil
		case "M":
			return fromItem(v)
		case "L":
			var l []json.RawMessage
			if err := json.Unmarshal(v, &l); err != nil {
				return nil, err
			}
			out := make([]any, len(l))
			for i, e := range l {
				var err error
				if out[i], err = fromAttr(e); err != nil {
					return nil, err
				}
			}
			return out, nil
		case "SS", "NS":
			var l []string
			if err := json.Unmarshal(v, &l); err != nil {
				return nil, err
			}
			out := make([]any, len(l))
			for i, s := range l {
				if t == "NS" {
					out[i] = json.Number(s)
				} else {
					out[i] = s
				}
			}
			return out, nil
		}
		return nil, fmt.Errorf("attribute type %s", t)
	}
	return nil, nil
}

// refApply keeps, per key, the event with the greatest order. Two different
// changes of a key with the same order are an error: the format would leave
// the tie to arrival order.
type refApply struct {
	last   map[string]map[string]refEvent
	events map[string]map[string][]refEvent // distinct changes per key
}

func newRefApply() *refApply {
	return &refApply{last: map[string]map[string]refEvent{}, events: map[string]map[string][]refEvent{}}
}

func (a *refApply) add(e refEvent) error {
	if a.last[e.table] == nil {
		a.last[e.table], a.events[e.table] = map[string]refEvent{}, map[string][]refEvent{}
	}
	for _, o := range a.events[e.table][e.rid] {
		if o.order == e.order {
			if o.del != e.del || !reflect.DeepEqual(o.image, e.image) {
				return fmt.Errorf("%s %s: two different changes with order %s", e.table, e.rid, e.order)
			}
			return nil // duplicate
		}
	}
	a.events[e.table][e.rid] = append(a.events[e.table][e.rid], e)
	if cur, ok := a.last[e.table][e.rid]; !ok || e.order > cur.order {
		a.last[e.table][e.rid] = e
	}
	return nil
}

func (a *refApply) final() State {
	s := State{}
	for t, rows := range a.last {
		for id, e := range rows {
			if e.del {
				continue
			}
			if s[t] == nil {
				s[t] = map[string]map[string]any{}
			}
			s[t][id] = e.image
		}
	}
	return s
}

// keyHistory returns each key's changes in decoded commit order, as
// "op image" strings comparable with historyByKey.
func (a *refApply) keyHistory() map[string][]string {
	out := map[string][]string{}
	for t, keys := range a.events {
		for id, evs := range keys {
			evs = slices.Clone(evs)
			sort.Slice(evs, func(i, j int) bool { return evs[i].order < evs[j].order })
			for _, e := range evs {
				out[t+" "+id] = append(out[t+" "+id], describeChange(e.del, e.image))
			}
		}
	}
	return out
}

// historyByKey returns each key's changes as the format's decoder reports
// them (see ExpectedState).
func historyByKey(h *History, f Format, o EncodeOptions) map[string][]string {
	out := map[string][]string{}
	for i := range h.Events() {
		e := &h.Events()[i]
		k := e.Table.Name + " " + e.RecordID
		var image map[string]any
		if e.After != nil {
			s := ExpectedState(State{e.Table.Name: {e.RecordID: e.AfterMap()}}, []*Table{e.Table}, f, o)
			image = s[e.Table.Name][e.RecordID]
		}
		out[k] = append(out[k], describeChange(e.After == nil, image))
	}
	return out
}

func describeChange(del bool, image map[string]any) string {
	if del {
		return "delete"
	}
	return "upsert " + string(appendValue(nil, image))
}

// diffStates describes up to 5 differences between two states.
func diffStates(want, got State) string {
	var out []string
	for t, rows := range want {
		for id, row := range rows {
			g, ok := got[t][id]
			switch {
			case !ok:
				out = append(out, fmt.Sprintf("%s %s missing", t, id))
			case !reflect.DeepEqual(row, g):
				out = append(out, fmt.Sprintf("%s %s:\n want %s\n  got %s", t, id, appendValue(nil, row), appendValue(nil, g)))
			}
		}
	}
	for t, rows := range got {
		for id := range rows {
			if _, ok := want[t][id]; !ok {
				out = append(out, fmt.Sprintf("%s %s unexpected", t, id))
			}
		}
	}
	slices.Sort(out)
	if len(out) > 5 {
		out = append(out[:5], fmt.Sprintf("... %d more", len(out)-5))
	}
	return strings.Join(out, "\n")
}
