package lambda

import (
	"log/slog"
	"reflect"
	"strings"
	"testing"
)

func TestConfigFromEnv(t *testing.T) {
	good := map[string]string{
		EnvSinkURL: "postgres://cdc:s3cret@db.example.com:5432/app", EnvKeys: testKeysEnv + ";*=pk",
		EnvSchema: "cdc", EnvLogLevel: "debug", EnvMaxAttempts: "5", EnvFormat: "dsql",
	}
	c, err := ConfigFromEnv(func(k string) string { return good[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.Format != "dsql" || c.Schema != "cdc" || c.LogLevel != slog.LevelDebug || c.MaxAttempts != 5 ||
		!reflect.DeepEqual(c.Keys.For("", "order_items"), []string{"order_id", "line_no"}) ||
		!reflect.DeepEqual(c.Keys.For("", "other"), []string{"pk"}) {
		t.Errorf("config = %+v", c)
	}
	if strings.Contains(c.SinkURL.String(), "s3cret") {
		t.Errorf("SinkURL.String() = %s shows the password", c.SinkURL)
	}

	bad := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"no_sink", nil, []string{"CDCFLOW_SINK_URL: must be set"}},
		{"both_sinks", map[string]string{EnvSinkURL: "duckdb:///tmp/x.duckdb", EnvSinkSecret: "s"}, []string{"set one, not both"}},
		{"scheme", map[string]string{EnvSinkURL: "mysql://u:pw@h/db"}, []string{"CDCFLOW_SINK_URL: must start with postgres://"}},
		{"duckdb_relative", map[string]string{EnvSinkURL: "duckdb://x.duckdb"}, []string{"absolute file path"}},
		{"schema_with_duckdb", map[string]string{EnvSinkURL: "duckdb:///tmp/x.duckdb", EnvSchema: "cdc"}, []string{"CDCFLOW_SCHEMA: applies to a PostgreSQL sink only"}},
		{"format", map[string]string{EnvSinkURL: "duckdb:///tmp/x.duckdb", EnvFormat: "avro"}, []string{`CDCFLOW_FORMAT: "avro"`}},
		{"keys_no_eq", map[string]string{EnvSinkURL: "duckdb:///tmp/x.duckdb", EnvKeys: "orders"}, []string{"CDCFLOW_KEYS: entry 1"}},
		{"keys_empty_col", map[string]string{EnvSinkURL: "duckdb:///tmp/x.duckdb", EnvKeys: "orders=a,,b"}, []string{"empty column name"}},
		{"keys_dup", map[string]string{EnvSinkURL: "duckdb:///tmp/x.duckdb", EnvKeys: "t=a;t=b"}, []string{"listed twice"}},
		{"attempts", map[string]string{EnvSinkURL: "duckdb:///tmp/x.duckdb", EnvMaxAttempts: "0"}, []string{"CDCFLOW_MAX_ATTEMPTS"}},
		{"several", map[string]string{EnvSinkURL: "ftp://u:hunter2@h", EnvLogLevel: "loud"}, []string{"CDCFLOW_SINK_URL", "CDCFLOW_LOG_LEVEL"}},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ConfigFromEnv(func(k string) string { return tc.env[k] })
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			for _, v := range tc.env {
				if strings.Contains(v, "hunter2") && strings.Contains(err.Error(), "hunter2") {
					t.Errorf("error %q shows a password", err)
				}
			}
		})
	}
}

func TestParseSecret(t *testing.T) {
	for _, tc := range []struct{ name, secret, want, err string }{
		{"url", " postgres://u:p@h/db ", "postgres://u:p@h/db", ""},
		{"json_url", `{"url":"duckdb:///tmp/a.duckdb"}`, "duckdb:///tmp/a.duckdb", ""},
		{"rds", `{"engine":"postgres","host":"db.example.com","port":5432,"username":"cdc","password":"p@ss/w:rd","dbname":"app"}`,
			"postgres://cdc:p%40ss%2Fw%3Ard@db.example.com:5432/app?sslmode=require", ""},
		{"rds_string_port", `{"host":"h","port":"6543","username":"u","password":"p"}`, "postgres://u:p@h:6543/?sslmode=require", ""},
		{"rds_mysql", `{"engine":"mysql","host":"h","username":"u","password":"hunter2"}`, "", `engine "mysql"`},
		{"json_without_host", `{"password":"hunter2"}`, "", "needs"},
		{"broken_json", `{"password":"hunter2"`, "", "neither a URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSecret(tc.secret)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || strings.Contains(err.Error(), "hunter2") {
					t.Fatalf("error = %v, want one with %q and no password", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseSecret = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
