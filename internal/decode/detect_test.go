package decode

import (
	"strings"
	"testing"

	"github.com/cdcflow/cdcflow/internal/testgen"
)

// Records of every format and shape, written out so the table reads as
// documentation of what auto-detection accepts.
const (
	dsqlSource = `"source":{"version":"1.0","ts_ms":1704164645100,"ts_ns":1704164645100000001,"txId":"ki42y7nwi2i4cnkn5t43gdy3qw","schema":"public","table":"orders","db":"postgres","cluster":"c1"},"ts_ms":1704164645115,"ts_ns":1704164645115274771`

	dsqlFull     = `{"type":"full","op":"c","before":null,"after":{"order_id":1001,"status":"new"},` + dsqlSource + `}`
	dsqlUntyped  = `{"op":"c","before":null,"after":{"order_id":1001,"status":"new"},` + dsqlSource + `}`
	dsqlDelete   = `{"type":"full","op":"d","before":{"order_id":1001},"after":null,` + dsqlSource + `}`
	dsqlChunked  = `{"type":"chunked","op":"c","before":null,"after":null,"chunked":{"chunk_id":"ck-1","fragments":2,"field":"after"},` + dsqlSource + `}`
	dsqlFragment = `{"type":"fragment","chunk_id":"ck-1","index":0,"data":"{\"order_id\":1001,"}`
	dsqlFrag1    = `{"type":"fragment","chunk_id":"ck-1","index":1,"data":"\"status\":\"new\"}"}`

	dbzSource   = `"source":{"version":"2.7.0.Final","connector":"postgresql","name":"pg","ts_ms":1704164646200,"ts_us":1704164646200000,"ts_ns":1704164646200000000,"snapshot":"false","db":"app","sequence":"[null,\"33555072\"]","schema":"public","table":"orders","txId":702,"lsn":33555072,"xmin":null}`
	dbzBare     = `{"before":null,"after":{"order_id":1001,"status":"new"},` + dbzSource + `,"transaction":null,"op":"c","ts_ms":1704164646215}`
	dbzNoOp     = `{"before":null,"after":{"order_id":1001,"status":"new"},` + dbzSource + `,"transaction":null,"ts_ms":1704164646215}`
	dbzSchema   = `{"schema":{"type":"struct","fields":[],"optional":false,"name":"pg.public.orders.Envelope"},"payload":` + dbzBare + `}`
	dbzSchemaNo = `{"schema":{"type":"struct","fields":[],"optional":false,"name":"pg.public.orders.Envelope"},"payload":` + dbzNoOp + `}`

	dmsData    = `{"data":{"order_id":1001,"status":"new"},"metadata":{"timestamp":"2024-01-02T03:04:05.100000Z","record-type":"data","operation":"insert","partition-key-type":"schema-table","schema-name":"public","table-name":"orders","transaction-id":4002}}`
	dmsControl = `{"control":{"table-def":{"columns":{"order_id":{"type":"INT8","nullable":false}},"primary-key":["order_id"]}},"metadata":{"timestamp":"2024-01-02T03:04:05.100000Z","record-type":"control","operation":"create-table","partition-key-type":"task-id","schema-name":"public","table-name":"orders"}}`

	ddbLambda  = `{"eventID":"1","eventName":"INSERT","eventVersion":"1.1","eventSource":"aws:dynamodb","awsRegion":"us-east-1","dynamodb":{"ApproximateCreationDateTime":1704164645,"Keys":{"order_id":{"N":"1001"}},"NewImage":{"order_id":{"N":"1001"},"status":{"S":"new"}},"SequenceNumber":"100000000000000000002","SizeBytes":40,"StreamViewType":"NEW_AND_OLD_IMAGES"},"eventSourceARN":"arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/2024-01-01T00:00:00.000"}`
	ddbKinesis = `{"awsRegion":"us-east-1","eventID":"0e4f","eventName":"MODIFY","userIdentity":null,"recordFormat":"application/json","tableName":"orders","dynamodb":{"ApproximateCreationDateTime":1605634424658,"ApproximateCreationDateTimePrecision":"MILLISECOND","Keys":{"order_id":{"N":"1001"}},"NewImage":{"order_id":{"N":"1001"},"status":{"S":"paid"}},"OldImage":{"order_id":{"N":"1001"},"status":{"S":"new"}},"SizeBytes":59},"eventSource":"aws:dynamodb"}`

	// Rows that carry another format's record in a JSON column, as an
	// audit or outbox table does: only top-level members may decide.
	ddbInRow = `{"order_id":1001,"payload":{"eventName":"INSERT","eventSource":"aws:dynamodb","dynamodb":{"Keys":{}}}}`
	dmsInRow = `{"order_id":1001,"metadata":{"record-type":"data","source":"dms"}}`
)

func TestDetect(t *testing.T) {
	cases := []struct {
		name, data, want string
	}{
		{"dsql full", dsqlFull, FormatDSQL},
		{"dsql full without type", dsqlUntyped, FormatDSQL},
		{"dsql delete", dsqlDelete, FormatDSQL},
		{"dsql chunked", dsqlChunked, FormatDSQL},
		{"dsql fragment", dsqlFragment, FormatDSQL},
		{"dsql truncated", dsqlFull[:60], FormatDSQL},
		{"debezium bare", dbzBare, FormatDebezium},
		{"debezium schema envelope", dbzSchema, FormatDebezium},
		{"debezium without op", dbzNoOp, FormatDebezium},
		{"debezium schema envelope without op", dbzSchemaNo, FormatDebezium},
		{"debezium truncated", dbzBare[:len(dbzBare)-40], FormatDebezium},
		{"tombstone null", "null", FormatDebezium},
		{"tombstone null with spaces", " \tnull\r\n", FormatDebezium},
		{"tombstone empty", "", FormatDebezium},
		{"tombstone blank", "  \n", FormatDebezium},
		{"dms data", dmsData, FormatDMS},
		{"dms control", dmsControl, FormatDMS},
		{"dynamodb lambda record", ddbLambda, FormatDynamoDB},
		{"dynamodb kinesis payload", ddbKinesis, FormatDynamoDB},
		{"garbage text", "hello world", ""},
		{"empty object", "{}", ""},
		{"unrelated object", `{"a":1,"b":[true,null]}`, ""},
		{"array", `[1,2,3]`, ""},
		{"number", `42`, ""},
		{"string", `"op"`, ""},
		{"broken object", `{"a":`, ""},
		{"binary", "\x00\xff\xfe{", ""},
		{"nul", "nul", ""},

		// A row may hold any JSON: another format's record in a column
		// must not change the record's format.
		{"dsql row holding a dynamodb record", strings.Replace(dsqlFull, `{"order_id":1001,"status":"new"}`, ddbInRow, 1), FormatDSQL},
		{"dsql row with a dms-like metadata column", strings.Replace(dsqlFull, `{"order_id":1001,"status":"new"}`, dmsInRow, 1), FormatDSQL},
		{"debezium row holding a dynamodb record", strings.Replace(dbzBare, `{"order_id":1001,"status":"new"}`, ddbInRow, 1), FormatDebezium},
		{"debezium row with a dms-like metadata column", strings.Replace(dbzSchema, `{"order_id":1001,"status":"new"}`, dmsInRow, 1), FormatDebezium},
		{"dms row holding a dynamodb record", strings.Replace(dmsData, `{"order_id":1001,"status":"new"}`, ddbInRow, 1), FormatDMS},
		{"dynamodb item with a dms-like metadata attribute", strings.Replace(ddbLambda, `"status":{"S":"new"}`, `"metadata":{"M":{"record-type":{"S":"data"}}}`, 1), FormatDynamoDB},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Detect([]byte(c.data)); got != c.want {
				t.Errorf("Detect = %q, want %q for %.300s", got, c.want, c.data)
			}
		})
	}
}

// TestDetectGenerated runs auto-detection over every record the generator
// writes, in every format and shape, over many seeds: no format's record is
// claimed by another.
func TestDetectGenerated(t *testing.T) {
	type variant struct {
		name   string
		format testgen.Format
		o      testgen.EncodeOptions
		kinds  []testgen.RecordKind // kinds the variant must produce
	}
	variants := []variant{
		{"dsql", testgen.FormatDSQL, testgen.EncodeOptions{FragmentBytes: 700}, []testgen.RecordKind{testgen.RecordChange, testgen.RecordChunked, testgen.RecordFragment}},
		{"dsql update op u", testgen.FormatDSQL, testgen.EncodeOptions{UpdateOp: "u"}, []testgen.RecordKind{testgen.RecordChange}},
		{"debezium", testgen.FormatDebezium, testgen.EncodeOptions{Tombstones: true}, []testgen.RecordKind{testgen.RecordChange, testgen.RecordTombstone}},
		{"debezium schema", testgen.FormatDebezium, testgen.EncodeOptions{DebeziumSchema: true}, []testgen.RecordKind{testgen.RecordChange}},
		{"dms", testgen.FormatDMS, testgen.EncodeOptions{ControlRecords: true}, []testgen.RecordKind{testgen.RecordChange, testgen.RecordControl}},
		{"dynamodb", testgen.FormatDynamoDB, testgen.EncodeOptions{}, []testgen.RecordKind{testgen.RecordChange}},
	}
	seeds := 12
	if testing.Short() {
		seeds = 3
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			seen := map[testgen.RecordKind]int{}
			for seed := int64(1); seed <= int64(seeds); seed++ {
				h := testgen.Generate(seed, testgen.Options{Changes: 150, SnapshotRows: 10, BigRatio: 0.1, BigBytes: 2000})
				recs, err := testgen.Encode(h, v.format, v.o)
				if err != nil {
					t.Fatal(err)
				}
				for i, r := range recs {
					seen[r.Kind]++
					if got := Detect(r.Data); got != string(v.format) {
						t.Fatalf("seed %d record %d (%s): Detect = %q, want %q: %.300s", seed, i, r.Kind, got, v.format, r.Data)
					}
				}
			}
			for _, k := range v.kinds {
				if seen[k] == 0 {
					t.Errorf("no %s records generated: the sweep does not cover them", k)
				}
			}
		})
	}
}
