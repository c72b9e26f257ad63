package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/cdcflow/cdcflow/internal/change"
)

var update = flag.Bool("update", false, "rewrite the testdata/*.golden.yaml files")

// testSecrets are the secret values the test environment holds; none may
// ever appear in an error message or in Redacted output.
var testSecrets = map[string]string{
	"CDCFLOW_PG_URL":        "postgres://cdcflow:s3cr3t-pg@127.0.0.1:5432/cdcflow?sslmode=disable",
	"CDCFLOW_SASL_PASSWORD": "hunter2-sasl",
	"CDCFLOW_AWS_SECRET":    "aws-secret-key-0123",
	"CDCFLOW_AWS_TOKEN":     "aws-session-token-4567",
	"CDCFLOW_PG_PASSWORD":   "pg-pass-word",
}

// secretValues are the parts of testSecrets that are secret.
var secretValues = []string{"s3cr3t-pg", "hunter2-sasl", "aws-secret-key-0123", "aws-session-token-4567", "pg-pass-word"}

func setTestEnv(t *testing.T) {
	t.Helper()
	for k, v := range testSecrets {
		t.Setenv(k, v)
	}
	t.Setenv("CDCFLOW_KEY_COLUMN", "event_id")
	t.Setenv("CDCFLOW_ATTEMPTS", "7")
	for _, k := range []string{"CDCFLOW_UNSET_FOR_TEST", "CDCFLOW_DATA_DIR", "CDCFLOW_TEST_UNSET_DIR", "CDCFLOW_TEST_UNSET_URL"} {
		t.Setenv(k, "")
		os.Unsetenv(k) // t.Setenv restores the original value afterwards
	}
}

func assertNoSecret(t *testing.T, what, text string) {
	t.Helper()
	for _, s := range secretValues {
		if strings.Contains(text, s) {
			t.Errorf("%s contains the secret %q:\n%s", what, s, text)
		}
	}
}

func TestGoodFiles(t *testing.T) {
	setTestEnv(t)
	files, err := filepath.Glob("testdata/*.good.yaml")
	if err != nil || len(files) < 5 {
		t.Fatalf("good files: %v, %v", files, err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".good.yaml")
		t.Run(name, func(t *testing.T) {
			c, err := Load(file)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if err := c.Validate(); err != nil {
				t.Fatalf("Validate after Load: %v", err)
			}
			got := c.Redacted()
			assertNoSecret(t, "Redacted()", got)
			golden := filepath.Join("testdata", name+".golden.yaml")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("read golden (run with -update to create): %v", err)
			}
			if got != string(want) {
				t.Errorf("Redacted() differs from %s (run with -update to accept):\n%s", golden, got)
			}
			// The redacted YAML loads back to the same configuration.
			again, err := Parse([]byte(got), "redacted.yaml")
			if err != nil {
				t.Fatalf("Parse(Redacted()): %v", err)
			}
			if again.Redacted() != got {
				t.Errorf("Redacted() does not round-trip:\n%s\nthen:\n%s", got, again.Redacted())
			}
		})
	}
}

// The two configurations of the project's README load exactly as written.
func TestReadmeExamples(t *testing.T) {
	setTestEnv(t)
	c, err := Load("testdata/quickstart_file.good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Source.File == nil || !slices.Equal(c.Source.File.Paths, []string{"examples/data/*.ndjson"}) {
		t.Errorf("source.file = %+v", c.Source.File)
	}
	if c.Source.Kafka != nil || c.Source.Kinesis != nil || c.Sink.Postgres != nil {
		t.Errorf("unexpected sections set: %+v %+v", c.Source, c.Sink)
	}
	wantDuck := DefaultDuckDB
	if c.Sink.DuckDB == nil || *c.Sink.DuckDB != wantDuck {
		t.Errorf("sink.duckdb = %+v, want %+v", c.Sink.DuckDB, wantDuck)
	}
	if c.DeadLetters.File != "dead-letters.ndjson" || c.Decode != DefaultDecode || c.Pipeline != DefaultPipeline || c.Log != DefaultLog {
		t.Errorf("defaults not applied: %+v %+v %+v %+v", c.DeadLetters, c.Decode, c.Pipeline, c.Log)
	}
	if got := c.Keys().For("public", "orders"); !slices.Equal(got, []string{"order_id"}) {
		t.Errorf("Keys().For(orders) = %v", got)
	}

	c, err = Load("testdata/kafka_postgres.good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	k := c.Source.Kafka
	if k == nil || !slices.Equal(k.Brokers, []string{"127.0.0.1:9092"}) || !slices.Equal(k.Topics, []string{"dsql.public.orders"}) ||
		k.Group != "cdcflow" || k.Start != StartEarliest || k.MaxInFlight != 64 || k.TLS.Enabled || k.SASL != nil {
		t.Errorf("source.kafka = %+v", k)
	}
	if c.Decode.Format != FormatDSQL {
		t.Errorf("decode.format = %q", c.Decode.Format)
	}
	pg := c.Sink.Postgres
	if pg == nil || pg.URL.Value() != testSecrets["CDCFLOW_PG_URL"] || pg.Schema != "public" || pg.TableNaming != NamingTable || !pg.DeadLetterTable {
		t.Errorf("sink.postgres = %+v", pg)
	}
	if c.Metrics.Listen != "127.0.0.1:9464" {
		t.Errorf("metrics.listen = %q", c.Metrics.Listen)
	}
}

func TestFullFile(t *testing.T) {
	setTestEnv(t)
	c, err := Load("testdata/full_kafka.good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	k := c.Source.Kafka
	if k.TopicRegex != `^dsql\.public\..*$` || len(k.Topics) != 0 || k.MaxInFlight != 8 || k.Start != StartLatest {
		t.Errorf("kafka = %+v", k)
	}
	wantTLS := TLS{Enabled: true, CAFile: "/etc/cdcflow/ca.pem", CertFile: "/etc/cdcflow/client.pem", KeyFile: "/etc/cdcflow/client.key"}
	if k.TLS != wantTLS {
		t.Errorf("tls = %+v", k.TLS)
	}
	if k.SASL == nil || k.SASL.Mechanism != SASLScramSHA512 || k.SASL.Username != "cdcflow" || k.SASL.Password.Value() != "hunter2-sasl" {
		t.Errorf("sasl = %+v", k.SASL)
	}
	if c.Decode.MaxFragmentBytes != 128*MiB || c.Decode.FragmentTimeout.Std() != 10*time.Minute {
		t.Errorf("decode = %+v", c.Decode)
	}
	want := Pipeline{BatchMaxEvents: 5000, BatchMaxBytes: 8 * MB, BatchMaxWait: Duration(500 * time.Millisecond),
		MaxAttempts: 3, RetryInitial: Duration(50 * time.Millisecond), RetryMax: Duration(time.Minute)}
	if c.Pipeline != want {
		t.Errorf("pipeline = %+v, want %+v", c.Pipeline, want)
	}
	if c.Tables["orders"].Columns["total"] != "DECIMAL(12,2)" {
		t.Errorf("tables.orders.columns = %v", c.Tables["orders"].Columns)
	}
	if !c.SoftDelete("public", "orders") || c.SoftDelete("public", "order_items") || c.SoftDelete("", "unlisted") {
		t.Error("SoftDelete: want the table override for orders and the sink's false elsewhere")
	}
	keys := c.Keys()
	if keys.Default != nil {
		t.Errorf("Keys().Default = %v, want nil", keys.Default)
	}
	for _, tc := range []struct {
		schema, table string
		want          []string
	}{
		{"public", "order_items", []string{"order_id", "line_no"}},
		{"other", "order_items", change.DefaultKey},
		{"", "orders", []string{"order_id"}},
		{"public", "customers", change.DefaultKey},
	} {
		if got := keys.For(tc.schema, tc.table); !slices.Equal(got, tc.want) {
			t.Errorf("Keys().For(%q, %q) = %v, want %v", tc.schema, tc.table, got, tc.want)
		}
	}
	// Keys does not share memory with the config.
	keys.Tables["orders"][0] = "changed"
	if c.Tables["orders"].Key[0] != "order_id" {
		t.Error("Keys() aliases the config's key slices")
	}
}

func TestAnchorsAndEnv(t *testing.T) {
	setTestEnv(t)
	c, err := Load("testdata/anchors_env.good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	wantPaths := []string{"-", "data/${literal}.ndjson", "data/*.ndjson.gz"}
	if !slices.Equal(c.Source.File.Paths, wantPaths) {
		t.Errorf("paths = %q, want %q", c.Source.File.Paths, wantPaths)
	}
	if !slices.Equal(c.Tables["customers"].Key, []string{"id"}) || !slices.Equal(c.Tables["events"].Key, []string{"event_id"}) {
		t.Errorf("tables = %+v", c.Tables)
	}
	if sd := c.Tables["events"].SoftDelete; sd == nil || *sd {
		t.Errorf("tables.events.soft_delete = %v, want explicit false", sd)
	}
	if c.Tables["orders"].SoftDelete != nil {
		t.Error("tables.orders.soft_delete set, want nil (inherit)")
	}
	if c.Sink.DuckDB == nil || *c.Sink.DuckDB != DefaultDuckDB {
		t.Errorf("a null duckdb section should take the defaults, got %+v", c.Sink.DuckDB)
	}
	if c.Decode != DefaultDecode {
		t.Errorf("a null decode section should keep the defaults, got %+v", c.Decode)
	}
	if c.Pipeline.MaxAttempts != 7 || c.Pipeline.BatchMaxBytes != 1024 || c.Pipeline.BatchMaxEvents != DefaultPipeline.BatchMaxEvents {
		t.Errorf("pipeline = %+v", c.Pipeline)
	}
}

// badCases lists, for each testdata/<name>.bad.yaml, every error expected:
// the text after the file name, so ":7: sink..." is "<file>:7: sink...".
// The test also checks that no other error is reported.
var badCases = map[string][]string{
	"unknown_top": {
		`:1: sources: unknown field (did you mean "source"?)`,
		`:5: logging: unknown field (expected one of source, decode, tables, sink, dead_letters, pipeline, metrics, log)`,
	},
	"unknown_deep": {`:7: sink.duckdb.pth: unknown field (did you mean "path"?)`},
	"unknown_kafka": {
		`:5: source.kafka.max-in-flight: unknown field (did you mean "max_in_flight"?)`,
		`:8: source.kafka.tls.ca_fiel: unknown field (did you mean "ca_file"?)`,
		`:9: source.kafka.sasl.pasword: unknown field (did you mean "password"?)`,
	},
	"unknown_table_field": {
		`:5: tables.orders.keys: unknown field (did you mean "key"?)`,
		`:6: tables.orders.colums: unknown field (did you mean "columns"?)`,
		`:9: pipeline.zzzz: unknown field (expected one of batch_max_events, `,
	},
	"wrong_type": {
		`:4: decode.format: expected a string, got a mapping`,
		`:5: tables: expected a mapping, got a sequence`,
		`:7: sink.duckdb: expected a mapping, got a string`,
	},
	"wrong_type_scalars": {
		`:3: source.kafka.brokers: expected a sequence, got a string`,
		`:5: source.kafka.max_in_flight: expected an integer, got "many"`,
		`:6: source.kafka.tls.enabled: expected a boolean (true or false), got "maybe"`,
		`:8: sink.postgres.schema: expected a string, got a boolean`,
		`:8: sink.postgres.soft_delete: expected a boolean, got a sequence`,
	},
	"bad_enum": {
		`:2: source.kafka.start: "beginning" is not one of earliest, latest`,
		`:3: decode.format: "xml" is not one of auto, dsql, debezium, dms, dynamodb`,
		`:5: sink.duckdb.table_naming: "qualified" is not one of table, schema_table`,
		`:6: log.level: "verbose" is not one of debug, info, warn, error`,
		`:6: log.format: "yaml" is not one of text, json`,
	},
	"two_sinks": {
		`:1: source: exactly one of file, kafka, kinesis must be set (found file, kinesis)`,
		`:4: sink: exactly one of duckdb, postgres must be set (found duckdb, postgres)`,
	},
	"no_sink": {`: sink: exactly one of duckdb, postgres must be set`},
	"empty": {
		`: source: exactly one of file, kafka, kinesis must be set`,
		`: sink: exactly one of duckdb, postgres must be set`,
	},
	"empty_key": {
		`:2: source.file.paths: must list at least one path`,
		`:4: tables.orders.key: must list at least one column`,
		`:5: tables.customers.key: must list at least one column`,
		`:6: tables.items.key[1]: key column must not be empty`,
		`:6: tables.items.key[2]: column "order_id" is listed twice (also at key[0])`,
	},
	"unset_env": {
		`:2: source.file.paths[0]: environment variable CDCFLOW_TEST_UNSET_DIR is not set`,
		`:5: sink.postgres.url: environment variable CDCFLOW_TEST_UNSET_URL is not set`,
		`:6: sink.postgres.schema: invalid environment variable name "1BAD"`,
		`:7: dead_letters.file: unterminated "${" (write $$ for a literal $)`,
	},
	"bad_duration": {
		`:3: decode.fragment_timeout: "5" is not a duration (use a number with a unit: 100ms, 5s, 1m, 2h)`,
		`:7: pipeline.batch_max_wait: "soon" is not a duration`,
	},
	"bad_byte_size": {
		`:3: decode.max_fragment_bytes: "64XB" is not a byte size: unknown unit "XB" (use B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)`,
		`:7: pipeline.batch_max_bytes: "1.5GiB" is not a byte size: fractions are not supported`,
	},
	"ranges": {
		`:3: decode.max_fragment_bytes: must be positive, got 0`,
		`:3: decode.fragment_timeout: must be positive, got -1s`,
		`:5: sink.duckdb.checkpoint_threshold: 80MB is more than 2/3 of memory_limit 96MB: DuckDB must hold the rows of a checkpoint in memory`,
		`:5: sink.duckdb.threads: must be at least 1, got 0`,
		`:7: pipeline.batch_max_events: must be at least 1, got 0`,
		`:8: pipeline.batch_max_wait: must be positive, got 0s`,
		`:9: pipeline.max_attempts: must be at least 1, got -2`,
		`:11: pipeline.retry_max: 50ms is less than retry_initial (1s)`,
	},
	"bad_identifier": {
		`:4: tables.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx: table name "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" is 64 bytes long (at most 63)`,
		`:5: tables."a.b.c": table name "a.b.c" has more than one dot (use table or schema.table)`,
		`:6: tables."bad\x01table": table name "bad\x01table" contains a control character`,
		`:6: tables."bad\x01table".key[0]: key column "col\tumn" contains a control character`,
		`:9: tables.orders.columns."": column must not be empty`,
		`:9: tables.orders.columns.total: "TEXT; DROP TABLE orders" is not a SQL type name`,
		`:11: sink.postgres.schema: schema name must not be empty`,
	},
	"tabs":           {`:3: invalid YAML: found character that cannot start any token (tabs are not allowed for indentation; use spaces)`},
	"invalid_syntax": {`:1: invalid YAML: did not find expected ',' or ']'`},
	"duplicate_key": {
		`:5: tables.orders: duplicate key (first defined at line 4)`,
		`:7: sink.duckdb.path: duplicate key (first defined at line 7)`,
	},
	"two_documents": {`:5: a configuration file holds one YAML document; found a second one`},
	"kafka_rules": {
		`:2: source.kafka: exactly one of topics, topic_regex must be set (found both)`,
		`:3: source.kafka.brokers[0]: "127.0.0.1" is not host:port`,
		`:3: source.kafka.brokers[1]: "[::1]:99999" has an invalid port (1 to 65535)`,
		`:4: source.kafka.topics[1]: "bad topic" is not a valid Kafka topic name`,
		`:6: source.kafka.group: must not be empty`,
		`:7: source.kafka.max_in_flight: must be at least 1, got 0`,
		`:8: source.kafka.tls.cert_file: set, but tls.enabled is false`,
		`:8: source.kafka.tls.insecure_skip_verify: set, but tls.enabled is false`,
		`:8: source.kafka.tls: cert_file and key_file must be set together`,
		`:9: source.kafka.sasl.password: must be set for mechanism scram-sha-256`,
	},
	"kinesis_rules": {
		`:2: source.kinesis.timestamp: must be set when start is at_timestamp`,
		`:2: source.kinesis: access_key_id and secret_access_key must be set together`,
		`:3: source.kinesis.stream: "my stream" is not a valid stream name`,
		`:4: source.kinesis.endpoint: "localhost:4567" is not an http:// or https:// URL`,
		`:9: metrics.listen: "localhost" is not host:port`,
	},
	"kinesis_leases": {
		`:4: source.kinesis.owner: "node\x01a" contains a control character`,
		`:4: source.kinesis.owner: only applies with sink.postgres (DuckDB has one writer: one daemon reads every shard)`,
		`:5: source.kinesis.lease_ttl: must be between 1s and 1h0m0s, got 500ms`,
		`:5: source.kinesis.lease_ttl: only applies with sink.postgres`,
	},
	"postgres_url": {
		`:2: source.file.paths[0]: "[a.ndjson" is not a valid glob pattern: syntax error in pattern`,
		`:5: sink.postgres.url: URL scheme must be postgres or postgresql`,
	},
	"merge_key": {
		`:1: base: unknown field (expected one of source, `,
		`:5: tables.orders."<<": merge keys (<<) are not supported; write the fields out`,
	},
	"top_level_sequence": {`:1: expected a mapping at the top level, got a sequence`},
	"sasl_rules": {
		`:7: source.kafka.sasl.mechanism: "gssapi" is not one of plain, scram-sha-256, scram-sha-512, aws-msk-iam`,
	},
}

func TestBadFiles(t *testing.T) {
	setTestEnv(t)
	files, err := filepath.Glob("testdata/*.bad.yaml")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".bad.yaml")
		seen[name] = true
		t.Run(name, func(t *testing.T) {
			want, ok := badCases[name]
			if !ok {
				t.Fatalf("no expected errors listed for %s", file)
			}
			c, err := Load(file)
			if err == nil {
				t.Fatalf("Load succeeded, want errors; config:\n%s", c.Redacted())
			}
			if c != nil {
				t.Error("Load returned a config along with errors")
			}
			msg := err.Error()
			assertNoSecret(t, "error", msg)
			lines := strings.Split(msg, "\n")
			if len(lines) != len(want) {
				t.Errorf("got %d errors, want %d:\n%s", len(lines), len(want), msg)
			}
			for i, w := range want {
				w = file + w
				if i < len(lines) && !strings.HasPrefix(lines[i], w) {
					t.Errorf("error %d:\n got: %s\nwant: %s...", i, lines[i], w)
				}
			}
			var prev int
			for _, e := range unwrapAll(err) {
				var ce *Error
				if !errors.As(e, &ce) {
					t.Fatalf("%v is not a *config.Error", e)
				}
				if ce.File != file || ce.Line < prev {
					t.Errorf("error %q: file %q or line %d out of order (previous %d)", ce, ce.File, ce.Line, prev)
				}
				prev = ce.Line
			}
		})
	}
	for name := range badCases {
		if !seen[name] {
			t.Errorf("badCases lists %s but testdata/%s.bad.yaml does not exist", name, name)
		}
	}
	if len(badCases) < 15 {
		t.Errorf("only %d bad cases", len(badCases))
	}
}

func unwrapAll(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func TestDefaults(t *testing.T) {
	d := Default()
	if d.Decode != DefaultDecode || d.Pipeline != DefaultPipeline || d.Log != DefaultLog {
		t.Errorf("Default() = %+v", d)
	}
	if d.Decode.Format != "auto" || d.Decode.MaxFragmentBytes != 64<<20 || d.Decode.FragmentTimeout.Std() != 5*time.Minute {
		t.Errorf("decode defaults = %+v", d.Decode)
	}
	if d.Pipeline.BatchMaxEvents != 10000 || d.Pipeline.BatchMaxBytes != 16<<20 || d.Pipeline.BatchMaxWait.Std() != 250*time.Millisecond ||
		d.Pipeline.MaxAttempts != 5 || d.Pipeline.RetryInitial.Std() != 100*time.Millisecond || d.Pipeline.RetryMax.Std() != 30*time.Second {
		t.Errorf("pipeline defaults = %+v", d.Pipeline)
	}
	c, err := parse([]byte(`
source:
  kafka: { brokers: ["k:9092"], topics: [t], tls: { enabled: true } }
sink:
  postgres: { url: "host=db user=u", soft_delete: true }
pipeline: { max_attempts: 2 }
log: { format: json }
`), "d.yaml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	wantKafka := DefaultKafka
	wantKafka.Brokers, wantKafka.Topics, wantKafka.TLS.Enabled = []string{"k:9092"}, []string{"t"}, true
	if !reflect.DeepEqual(*c.Source.Kafka, wantKafka) {
		t.Errorf("kafka = %+v, want %+v", *c.Source.Kafka, wantKafka)
	}
	wantPG := DefaultPostgres
	wantPG.URL, wantPG.SoftDelete = "host=db user=u", true
	if *c.Sink.Postgres != wantPG {
		t.Errorf("postgres = %+v, want %+v", *c.Sink.Postgres, wantPG)
	}
	wantPipe := DefaultPipeline
	wantPipe.MaxAttempts = 2
	if c.Pipeline != wantPipe || c.Log != (Log{Level: "info", Format: "json"}) {
		t.Errorf("partial sections lost their defaults: %+v %+v", c.Pipeline, c.Log)
	}
	if !c.SoftDelete("public", "anything") {
		t.Error("SoftDelete should fall back to the sink's soft_delete")
	}
	if DefaultKafka.Brokers != nil || DefaultKafka.Topics != nil {
		t.Error("decoding modified DefaultKafka")
	}
}

func noEnv(string) (string, bool) { return "", false }

// A Config built in Go validates too; its errors carry paths but no file.
func TestValidateGoConfig(t *testing.T) {
	c := Default()
	err := c.Validate()
	if err == nil || err.Error() != "source: exactly one of file, kafka, kinesis must be set\nsink: exactly one of duckdb, postgres must be set" {
		t.Errorf("Validate(Default()) = %v", err)
	}
	c.Source.File = &FileSource{Paths: []string{"-"}}
	duck := DefaultDuckDB
	c.Sink.DuckDB = &duck
	c.Tables = map[string]Table{"public.orders": {Key: []string{"id"}}}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate(valid) = %v", err)
	}
	c.Tables["public.orders"] = Table{}
	if err := c.Validate(); err == nil || err.Error() != `tables."public.orders".key: must list at least one column` {
		t.Errorf("Validate(empty key) = %v", err)
	}
}

func TestInlineErrors(t *testing.T) {
	const base = "source:\n  file: { paths: [a] }\nsink:\n  duckdb: {}\n"
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"alias to mapping where string expected", base + "x: &m {a: 1}\nlog: { level: *m }\n", "c.yaml:5: x: unknown field"},
		{"unknown tag", base + "log: { level: !env LEVEL }\n", "c.yaml:5: log.level: unsupported YAML tag !env"},
		{"non-string key", base + "tables: { [a, b]: { key: [id] } }\n", "c.yaml:5: tables: mapping keys must be strings, got a sequence"},
		{"integer overflow", base + "pipeline: { batch_max_events: 99999999999999999999 }\n", `c.yaml:5: pipeline.batch_max_events: expected an integer, got "99999999999999999999"`},
		{"float for integer", base + "pipeline: { max_attempts: 1.5 }\n", `c.yaml:5: pipeline.max_attempts: expected an integer, got "1.5"`},
		{"sequence of mappings", base + "tables: { t: { key: [{a: 1}] } }\n", "c.yaml:5: tables.t.key[0]: expected a string, got a mapping"},
		{"quoted table key path", base + "tables: { \"public.t\": { kee: [id] } }\n", `c.yaml:5: tables."public.t".kee: unknown field (did you mean "key"?)`},
		{"recursive alias", "a: &a [*a]\n" + base, "c.yaml:1: a: unknown field"},
		{"sasl without mechanism", "source:\n  kafka: { brokers: [\"k:1\"], topics: [t], sasl: { username: u } }\nsink:\n  duckdb: {}\n", "c.yaml:2: source.kafka.sasl.mechanism: must be set (one of plain, scram-sha-256, scram-sha-512, aws-msk-iam)"},
		{"timestamp without at_timestamp", "source:\n  kinesis: { stream: s, timestamp: \"2025-01-01T00:00:00Z\" }\nsink:\n  duckdb: {}\n", "c.yaml:2: source.kinesis.timestamp: only applies when start is at_timestamp"},
		{"bad timestamp", "source:\n  kinesis: { stream: s, start: at_timestamp, timestamp: yesterday }\nsink:\n  duckdb: {}\n", `c.yaml:2: source.kinesis.timestamp: "yesterday" is not an RFC 3339 time`},
		{"bad topic regex", "source:\n  kafka: { brokers: [\"k:1\"], topic_regex: \"(\" }\nsink:\n  duckdb: {}\n", "c.yaml:2: source.kafka.topic_regex: invalid regular expression"},
		{"no topics", "source:\n  kafka: { brokers: [\"k:1\"] }\nsink:\n  duckdb: {}\n", "c.yaml:2: source.kafka: exactly one of topics, topic_regex must be set"},
		{"no brokers", "source:\n  kafka: { topics: [t] }\nsink:\n  duckdb: {}\n", "c.yaml:2: source.kafka.brokers: must list at least one broker"},
		{"no stream", "source:\n  kinesis: {}\nsink:\n  duckdb: {}\n", "c.yaml:2: source.kinesis.stream: must be set"},
		{"postgres no url", "source:\n  file: { paths: [a] }\nsink:\n  postgres: {}\n", "c.yaml:4: sink.postgres.url: must be set"},
		{"postgres not a url", "source:\n  file: { paths: [a] }\nsink:\n  postgres: { url: localhost }\n", "c.yaml:4: sink.postgres.url: is neither a postgres:// URL nor a key=value connection string"},
		{"duckdb empty path", "source:\n  file: { paths: [a] }\nsink:\n  duckdb: { path: \"\" }\n", "c.yaml:4: sink.duckdb.path: must not be empty"},
		{"string as boolean", base + "tables: { t: { key: [id], soft_delete: \"yes\" } }\n", `c.yaml:5: tables.t.soft_delete: expected a boolean (true or false), got "yes"`},
		{"msk iam half credentials", "source:\n  kafka: { brokers: [\"k:1\"], topics: [t], sasl: { mechanism: aws-msk-iam, username: AK } }\nsink:\n  duckdb: {}\n", "c.yaml:2: source.kafka.sasl: username (access key id) and password (secret access key) must be set together"},
		{"scram session token", "source:\n  kafka: { brokers: [\"k:1\"], topics: [t], sasl: { mechanism: plain, username: u, password: p, session_token: x } }\nsink:\n  duckdb: {}\n", "c.yaml:2: source.kafka.sasl.session_token: only applies to mechanism aws-msk-iam"},
		{"bad column type chars", base + "tables: { t: { key: [id], columns: { c: \"INT -- x\" } } }\n", `c.yaml:5: tables.t.columns.c: "INT -- x" is not a SQL type name`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse([]byte(tc.yaml), "c.yaml", noEnv)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error:\n%v\nwant it to contain:\n%s", err, tc.want)
			}
		})
	}
}

func TestAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 9; i++ {
		fmt.Fprintf(&b, "a%d: &a%d [", i, i)
		for j := range 10 {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*a%d", i-1)
		}
		b.WriteString("]\n")
	}
	b.WriteString("tables: { t: { key: *a8 } }\n")
	// The schema has no recursive types, so aliases expand one level at most:
	// the ten items of a8 are reported, not 10^9 strings decoded.
	_, err := parse([]byte(b.String()), "bomb.yaml", noEnv)
	if err == nil {
		t.Fatal("no error")
	}
	errs := unwrapAll(err)
	var typeErrs int
	for _, e := range errs {
		if strings.Contains(e.Error(), "expected a string, got a sequence") {
			typeErrs++
		}
	}
	if typeErrs != 10 {
		t.Errorf("got %d type errors, want 10:\n%v", typeErrs, err)
	}
}

func TestExpandEnv(t *testing.T) {
	env := map[string]string{"A": "alpha", "EMPTY": "", "DOLLAR": "$x"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	for _, tc := range []struct{ in, want, err string }{
		{in: "plain", want: "plain"},
		{in: "${A}", want: "alpha"},
		{in: "x-${A}-y", want: "x-alpha-y"},
		{in: "${A}${A}", want: "alphaalpha"},
		{in: "${EMPTY}", want: ""},
		{in: "${EMPTY:-dflt}", want: "dflt"},
		{in: "${UNSET:-dflt}", want: "dflt"},
		{in: "${UNSET:-}", want: ""},
		{in: "${A:-dflt}", want: "alpha"},
		{in: "$${A}", want: "${A}"},
		{in: "$$$${A}", want: "$${A}"},
		{in: "$$${A}", want: "$alpha"},
		{in: "${DOLLAR}", want: "$x"}, // values are not expanded again
		{in: "cost: $5", want: "cost: $5"},
		{in: "trailing $", want: "trailing $"},
		{in: "${UNSET}", err: "environment variable UNSET is not set"},
		{in: "${A", err: `unterminated "${"`},
		{in: "${}", err: `invalid environment variable name ""`},
		{in: "${A B}", err: `invalid environment variable name "A B"`},
		{in: "${9A}", err: `invalid environment variable name "9A"`},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := expandEnv(tc.in, lookup)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("expandEnv(%q) = %q, %v; want error %q", tc.in, got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("expandEnv(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestByteSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want ByteSize
		str  string
		err  string
	}{
		{in: "1024", want: 1024, str: "1KiB"},
		{in: "0", want: 0, str: "0"},
		{in: "1000", want: 1000, str: "1KB"},
		{in: "1023", want: 1023, str: "1023"},
		{in: "64MiB", want: 64 << 20, str: "64MiB"},
		{in: "16MB", want: 16_000_000, str: "16MB"},
		{in: "16 mb", want: 16_000_000, str: "16MB"},
		{in: "1GiB", want: 1 << 30, str: "1GiB"},
		{in: "2TB", want: 2e12, str: "2TB"},
		{in: "5B", want: 5, str: "5"},
		{in: " 3KiB ", want: 3072, str: "3KiB"},
		{in: "1536MiB", want: 1536 << 20, str: "1536MiB"},
		{in: "", err: `"" is not a byte size`},
		{in: "MiB", err: `"MiB" is not a byte size`},
		{in: "-1", err: `"-1" is not a byte size`},
		{in: "1.5GiB", err: "fractions are not supported"},
		{in: "64XB", err: `unknown unit "XB"`},
		{in: "9223372036854775808", err: "number too large"},
		{in: "9000000TiB", err: "too large"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseByteSize(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseByteSize(%q) = %d, %v; want error %q", tc.in, got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want || got.String() != tc.str {
				t.Errorf("ParseByteSize(%q) = %d (%s), %v; want %d (%s)", tc.in, got, got, err, tc.want, tc.str)
			}
			back, err := ParseByteSize(got.String())
			if err != nil || back != got {
				t.Errorf("ParseByteSize(String()) = %d, %v", back, err)
			}
		})
	}
}

func TestDuration(t *testing.T) {
	var d Duration
	if err := d.UnmarshalText([]byte("1m30s")); err != nil || d.Std() != 90*time.Second || d.String() != "1m30s" {
		t.Errorf("1m30s -> %v, %v", d, err)
	}
	for _, bad := range []string{"5", "soon", "", "1x"} {
		if _, err := ParseDuration(bad); err == nil || !strings.Contains(err.Error(), "is not a duration") {
			t.Errorf("ParseDuration(%q) = %v", bad, err)
		}
	}
	out, err := yaml.Marshal(struct {
		D Duration `yaml:"d"`
		B ByteSize `yaml:"b"`
	}{Duration(100 * time.Millisecond), 16 * MiB})
	if err != nil || string(out) != "d: 100ms\nb: 16MiB\n" {
		t.Errorf("yaml = %q, %v", out, err)
	}
}

func TestSecretFormatting(t *testing.T) {
	const value = "hunter2-sasl"
	s := Secret(value)
	if s.Value() != value || string(s) != value {
		t.Fatal("Value() does not return the secret")
	}
	sasl := &SASL{Mechanism: "plain", Username: "u", Password: s}
	for _, f := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10s", "%-4v"} {
		for _, v := range []any{s, sasl, *sasl, []Secret{s}, map[string]Secret{"k": s}} {
			got := fmt.Sprintf(f, v)
			if strings.Contains(got, value) || !strings.Contains(got, "***") {
				t.Errorf("Sprintf(%q, %T) = %q", f, v, got)
			}
		}
	}
	if got := s.String(); got != "***" {
		t.Errorf("String() = %q", got)
	}
	if Secret("").String() != "" {
		t.Error("an empty secret should print empty")
	}
	j, _ := json.Marshal(sasl)
	y, _ := yaml.Marshal(sasl)
	txt, _ := s.MarshalText()
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("x", "password", s, "sasl", sasl)
	for what, out := range map[string]string{"json": string(j), "yaml": string(y), "text": string(txt), "slog": logged.String()} {
		if strings.Contains(out, value) || !strings.Contains(out, "***") {
			t.Errorf("%s = %s", what, out)
		}
	}
}

func TestSecretURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"postgres://cdcflow:pw@127.0.0.1:5432/db?sslmode=disable", "postgres://cdcflow:***@127.0.0.1:5432/db?sslmode=disable"},
		{"postgresql://cdcflow@host/db", "postgresql://cdcflow@host/db"},
		{"postgres://host/db", "postgres://host/db"},
		{"postgres://u:p%40ss%2Fw@host/db", "postgres://u:***@host/db"},
		{"postgres://u:p@ss@host/db", "postgres://u:***@host/db"},
		{"postgres://u:pa:ss@host/db", "postgres://u:***@host/db"},
		{"postgres://host/db?user=u&password=pw", "postgres://host/db?password=%2A%2A%2A&user=u"},
		{"postgres://u:12#pw@host/db", "***"},
		{"postgres://u:pw/x@host/db", "***"},
		{"postgres://u:p?w@host/db", "***"},
		{"postgres://u:pw@ho st/db", "***"},
		{"host=db user=u password=pw dbname=x", "host=db user=u password=*** dbname=x"},
		{"host=db password = 'p w\\' x' sslpassword=k", "host=db password=*** sslpassword=***"},
		{"user:pw@host", "***"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			s := SecretURL(tc.in)
			if got := s.String(); got != tc.want {
				t.Errorf("String() = %q, want %q", got, tc.want)
			}
			if got := fmt.Sprintf("%v|%s|%+v", s, s, s); got != tc.want+"|"+tc.want+"|"+tc.want {
				t.Errorf("Sprintf = %q", got)
			}
			if s.Value() != tc.in {
				t.Errorf("Value() = %q", s.Value())
			}
		})
	}
}

// Secrets never appear in errors or in Redacted output, whatever goes wrong.
func TestSecretsNeverLeak(t *testing.T) {
	setTestEnv(t)
	// Every bad file, and configurations broken around their secrets.
	inputs := map[string]string{}
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		inputs[f] = string(b)
	}
	src := "source:\n  kafka: { brokers: [\"k:1\"], topics: [t], sasl: %s }\nsink:\n  postgres: { url: %s }\n"
	for i, pair := range [][2]string{
		{`{ mechanism: plain, username: u, password: "${CDCFLOW_SASL_PASSWORD}" }`, `"mysql://u:${CDCFLOW_PG_PASSWORD}@h/db"`},
		{`{ mechanism: bogus, password: "${CDCFLOW_SASL_PASSWORD}" }`, `"postgres://u:${CDCFLOW_PG_PASSWORD}@h:port/db"`},
		{`{ mechanism: plain, password: { v: "${CDCFLOW_SASL_PASSWORD}" } }`, `"postgres://u:${CDCFLOW_PG_PASSWORD}#x@h/db"`},
		{`{ mechanism: plain, password: ["${CDCFLOW_SASL_PASSWORD}"], session_token: "${CDCFLOW_AWS_TOKEN}" }`, `[ "${CDCFLOW_PG_URL}" ]`},
		{`{ mechanism: plain, username: u, password: hunter2-sasl, session_token: aws-session-token-4567 }`, `"postgres://u:pg-pass-word@h/db?password=pg-pass-word&x=\u0001"`},
		{`{ mechanism: aws-msk-iam, password: "${CDCFLOW_AWS_SECRET}" }`, `"ftp://u:${CDCFLOW_PG_PASSWORD}@h"`},
		{`{ mechanism: plain, password: true }`, `"${CDCFLOW_PG_URL}x:"`},
	} {
		inputs[fmt.Sprintf("inline-%d", i)] = fmt.Sprintf(src, pair[0], pair[1])
	}
	inputs["kinesis"] = "source:\n  kinesis: { stream: s, secret_access_key: \"${CDCFLOW_AWS_SECRET}\", session_token: \"${CDCFLOW_AWS_TOKEN}\", start: nope }\nsink:\n  duckdb: {}\n"
	inputs["kinesis-ok"] = "source:\n  kinesis: { stream: s, access_key_id: AK, secret_access_key: \"${CDCFLOW_AWS_SECRET}\", session_token: \"${CDCFLOW_AWS_TOKEN}\" }\nsink:\n  postgres: { url: \"host=h password=pg-pass-word\" }\n"
	parsed := 0
	for name, in := range inputs {
		c, err := Parse([]byte(in), name)
		if err != nil {
			assertNoSecret(t, name+" error", err.Error())
			continue
		}
		parsed++
		assertNoSecret(t, name+" Redacted()", c.Redacted())
		for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
			assertNoSecret(t, name+" "+f, fmt.Sprintf(f, c)+fmt.Sprintf(f, *c)+fmt.Sprintf(f, c.Source)+fmt.Sprintf(f, c.Sink)+
				fmt.Sprintf(f, c.Source.Kafka)+fmt.Sprintf(f, c.Source.Kinesis)+fmt.Sprintf(f, c.Sink.Postgres))
		}
		j, _ := json.Marshal(c)
		assertNoSecret(t, name+" json", string(j))
	}
	if parsed < 5 {
		t.Errorf("only %d inputs parsed; the Redacted checks ran too rarely", parsed)
	}
}

func TestParentPath(t *testing.T) {
	for in, want := range map[string]string{
		"a":                      "",
		"a.b":                    "a",
		"a.b[2]":                 "a.b",
		`tables."public.orders"`: "tables",
		`tables."a.b".key[0]`:    `tables."a.b".key`,
		`tables."a\".b".key`:     `tables."a\".b"`,
	} {
		if got := parentPath(in); got != want {
			t.Errorf("parentPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "absent.yaml"))
	if err == nil || !strings.Contains(err.Error(), "read config") || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(absent) = %v", err)
	}
}

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err == nil {
			f.Add(b)
		}
	}
	lookup := func(k string) (string, bool) {
		if k == "SET" {
			return "value", true
		}
		return "", false
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := parse(data, "f.yaml", lookup)
		if err != nil {
			for _, e := range unwrapAll(err) {
				var ce *Error
				if !errors.As(e, &ce) || ce.File != "f.yaml" {
					t.Fatalf("error %v is not a *Error for f.yaml", e)
				}
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse returned a config that fails Validate: %v", err)
		}
		out := c.Redacted()
		again, err := parse([]byte(out), "again.yaml", lookup)
		if err != nil {
			t.Fatalf("Redacted output does not parse: %v\n%s", err, out)
		}
		if again.Redacted() != out {
			t.Fatalf("Redacted does not round-trip:\n%s\nthen:\n%s", out, again.Redacted())
		}
	})
}
