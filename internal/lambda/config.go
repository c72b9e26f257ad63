package lambda

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/config"
	"github.com/cdcflow/cdcflow/internal/decode"
	"github.com/cdcflow/cdcflow/internal/sink"
	"github.com/cdcflow/cdcflow/internal/sink/duckdb"
	"github.com/cdcflow/cdcflow/internal/sink/postgres"
	"github.com/cdcflow/cdcflow/internal/sqlgen"
)

// Environment variables the function reads.
const (
	EnvSinkURL       = "CDCFLOW_SINK_URL"        // postgres://… or duckdb:///tmp/x.duckdb
	EnvSinkSecret    = "CDCFLOW_SINK_URL_SECRET" // Secrets Manager secret id holding the sink URL (instead of EnvSinkURL)
	EnvFormat        = "CDCFLOW_FORMAT"          // auto (default), dsql, debezium, dms, dynamodb
	EnvKeys          = "CDCFLOW_KEYS"            // "orders=order_id;order_items=order_id,line_no"; "*=col" sets the default
	EnvSchema        = "CDCFLOW_SCHEMA"          // PostgreSQL schema (default public)
	EnvLogLevel      = "CDCFLOW_LOG_LEVEL"       // debug, info (default), warn, error
	EnvMaxAttempts   = "CDCFLOW_MAX_ATTEMPTS"    // Apply attempts per invocation (default 3)
	DefaultAttempts  = 3
	duckdbURLPrefix  = "duckdb://"
	postgresScheme   = "postgres://"
	postgresqlScheme = "postgresql://"
)

// Config is the function's configuration, read from the environment once
// per container.
type Config struct {
	SinkURL     config.SecretURL // the sink; a secret: String() redacts the password
	SinkSecret  string           // Secrets Manager secret id to read SinkURL from at init; "" when SinkURL is set
	Format      string           // decode format
	Keys        *change.Keys     // key columns per table
	Schema      string           // PostgreSQL schema; "" means postgres.DefaultSchema
	LogLevel    slog.Level
	MaxAttempts int // Apply attempts per invocation before the batch is reported failed
}

// ConfigFromEnv reads the configuration through getenv (os.Getenv in the
// function). Every problem is reported, each naming its variable; values of
// secrets never appear in the error.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	c := Config{Format: decode.FormatAuto, LogLevel: slog.LevelInfo, MaxAttempts: DefaultAttempts}
	var errs []error
	url, secret := strings.TrimSpace(getenv(EnvSinkURL)), strings.TrimSpace(getenv(EnvSinkSecret))
	switch {
	case url != "" && secret != "":
		errs = append(errs, fmt.Errorf("%s and %s: set one, not both", EnvSinkURL, EnvSinkSecret))
	case url == "" && secret == "":
		errs = append(errs, fmt.Errorf("%s: must be set (postgres://… or duckdb:///tmp/<file>.duckdb), or %s to a Secrets Manager secret holding it", EnvSinkURL, EnvSinkSecret))
	case url != "":
		if err := checkSinkURL(url); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", EnvSinkURL, err))
		}
		c.SinkURL = config.SecretURL(url)
	default:
		c.SinkSecret = secret
	}
	if f := strings.TrimSpace(getenv(EnvFormat)); f != "" {
		switch f {
		case decode.FormatAuto, decode.FormatDSQL, decode.FormatDebezium, decode.FormatDMS, decode.FormatDynamoDB:
			c.Format = f
		default:
			errs = append(errs, fmt.Errorf("%s: %q is not one of auto, dsql, debezium, dms, dynamodb", EnvFormat, f))
		}
	}
	keys, err := ParseKeys(getenv(EnvKeys))
	if err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", EnvKeys, err))
	}
	c.Keys = keys
	if s := strings.TrimSpace(getenv(EnvSchema)); s != "" {
		if err := sqlgen.ValidateIdent(s); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", EnvSchema, err))
		} else if strings.HasPrefix(url, duckdbURLPrefix) {
			errs = append(errs, fmt.Errorf("%s: applies to a PostgreSQL sink only; unset it for DuckDB", EnvSchema))
		}
		c.Schema = s
	}
	if l := strings.TrimSpace(getenv(EnvLogLevel)); l != "" {
		if err := c.LogLevel.UnmarshalText([]byte(l)); err != nil {
			errs = append(errs, fmt.Errorf("%s: %q is not one of debug, info, warn, error", EnvLogLevel, l))
		}
	}
	if a := strings.TrimSpace(getenv(EnvMaxAttempts)); a != "" {
		n, err := strconv.Atoi(a)
		if err != nil || n < 1 || n > 100 {
			errs = append(errs, fmt.Errorf("%s: %q is not a whole number from 1 to 100", EnvMaxAttempts, a))
		} else {
			c.MaxAttempts = n
		}
	}
	return c, errors.Join(errs...)
}

// checkSinkURL checks the kind of a sink URL without echoing it.
func checkSinkURL(u string) error {
	switch {
	case strings.HasPrefix(u, duckdbURLPrefix):
		path := strings.TrimPrefix(u, duckdbURLPrefix)
		if path == "" || !strings.HasPrefix(path, "/") {
			return errors.New("a DuckDB URL needs an absolute file path: duckdb:///tmp/<file>.duckdb (Lambda can write only under /tmp)")
		}
	case strings.HasPrefix(u, postgresScheme), strings.HasPrefix(u, postgresqlScheme):
	default:
		return errors.New("must start with postgres://, postgresql:// or duckdb:// (the value is withheld: it may hold a password)")
	}
	return nil
}

// ParseKeys parses "table=col[,col…];…" into key columns per table; a table
// may be schema-qualified, and "*" sets the default for unlisted tables.
// An empty string means every table is keyed by change.DefaultKey.
func ParseKeys(s string) (*change.Keys, error) {
	k := &change.Keys{Tables: map[string][]string{}}
	if strings.TrimSpace(s) == "" {
		return k, nil
	}
	for i, entry := range strings.Split(s, ";") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		table, cols, ok := strings.Cut(entry, "=")
		table = strings.TrimSpace(table)
		if !ok || table == "" {
			return nil, fmt.Errorf("entry %d %q: want table=column[,column…]", i+1, entry)
		}
		var list []string
		for _, c := range strings.Split(cols, ",") {
			c = strings.TrimSpace(c)
			if c == "" {
				return nil, fmt.Errorf("entry %d (%s): empty column name", i+1, table)
			}
			list = append(list, c)
		}
		if table == "*" {
			if k.Default != nil {
				return nil, fmt.Errorf("entry %d: the default (*) is given twice", i+1)
			}
			k.Default = list
			continue
		}
		if _, dup := k.Tables[table]; dup {
			return nil, fmt.Errorf("entry %d: table %s is listed twice", i+1, table)
		}
		k.Tables[table] = list
	}
	return k, nil
}

// OpenSink opens the sink c names, with dead letters stored in the sink's
// cdc_dead_letters table. The URL never appears in its errors.
func OpenSink(ctx context.Context, c Config, log *slog.Logger) (sink.Sink, error) {
	u := c.SinkURL.Value()
	if err := checkSinkURL(u); err != nil {
		return nil, fmt.Errorf("sink: %w", err)
	}
	if path, ok := strings.CutPrefix(u, duckdbURLPrefix); ok {
		s, err := duckdb.Open(ctx, duckdb.Options{Path: path, DeadLetterTable: true})
		if err != nil {
			return nil, fmt.Errorf("sink duckdb: %w", err)
		}
		return s, nil
	}
	s, err := postgres.Open(ctx, postgres.Options{
		URL: u, Schema: c.Schema, DeadLetterTable: true, Logger: log,
		// DynamoDB Streams records carry no shard id: their positions are
		// not checkpointed, so none may filter them; the sink deduplicates
		// them by sequence number instead (change.Batch.DedupePositions,
		// see doc.go).
		CanResume: func(source string) bool { return source != "-" && !isDynamoStream(source) },
	})
	if err != nil {
		return nil, fmt.Errorf("sink postgres: %w", err)
	}
	return s, nil
}

// isDynamoStream reports whether source is a DynamoDB stream ARN.
func isDynamoStream(source string) bool { return strings.HasPrefix(source, "arn:aws:dynamodb:") }

// decodeOptions returns the decoder options of c.
func decodeOptions(c Config) decode.Options {
	return decode.Options{Format: c.Format, Keys: c.Keys}
}
