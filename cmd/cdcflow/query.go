package main

import (
	"context"
	"database/sql/driver"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/cdcflow/cdcflow/internal/config"
	"github.com/cdcflow/cdcflow/internal/sink/duckdb"
	"github.com/cdcflow/cdcflow/internal/sqlgen"
)

func queryCmd(s *streams) *cobra.Command {
	var sinkRaw, output string
	c := &cobra.Command{
		Use:   "query --sink URL [--output table|csv|json] SQL",
		Short: "Run read-only SQL against a sink and print the result",
		Example: `  cdcflow query --sink duckdb://demo.duckdb "SELECT * FROM orders_current"
  cdcflow query --sink duckdb://demo.duckdb --output json "SELECT reason, count(*) AS n FROM cdc_dead_letters GROUP BY reason"`,
		Args: argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if sinkRaw == "" {
				return usagef("query: --sink is required")
			}
			su, err := parseSinkURL(sinkRaw)
			if err != nil {
				return usageError{err}
			}
			switch output {
			case "table", "csv", "json":
			default:
				return usagef("--output %q: want table, csv or json", output)
			}
			var cols []string
			var rows [][]any
			if su.kind == "postgres" {
				cols, rows, err = queryPostgres(cmd.Context(), su.url, args[0])
			} else {
				cols, rows, err = duckdb.Query(cmd.Context(), su.path, args[0])
			}
			if err != nil {
				return err
			}
			switch output {
			case "csv":
				return writeCSV(s.out, cols, rows)
			case "json":
				return writeJSON(s.out, cols, rows)
			}
			return writeTable(s.out, cols, rows)
		},
	}
	c.Flags().StringVar(&sinkRaw, "sink", "", "duckdb://PATH or postgres://USER:PASSWORD@HOST/DB")
	c.Flags().StringVarP(&output, "output", "o", "table", "table, csv or json (an array of objects)")
	return c
}

// queryPostgres runs one query in a READ ONLY transaction. Errors never
// carry the URL.
func queryPostgres(ctx context.Context, url, query string) ([]string, [][]any, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, nil, usagef("--sink: not a valid PostgreSQL URL")
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to postgres %s:%d/%s: %w", cfg.Host, cfg.Port, cfg.Database, redactErr(err, cfg.Password))
	}
	defer conn.Close(context.WithoutCancel(ctx))
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, nil, fmt.Errorf("begin read-only transaction: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	r, err := tx.Query(ctx, query)
	if err != nil {
		return nil, nil, fmt.Errorf("query postgres: %w", err)
	}
	defer r.Close()
	var cols []string
	for _, f := range r.FieldDescriptions() {
		cols = append(cols, f.Name)
	}
	var rows [][]any
	for r.Next() {
		vals, err := r.Values()
		if err != nil {
			return nil, nil, fmt.Errorf("query postgres: %w", err)
		}
		for i, v := range vals {
			if dv, ok := v.(driver.Valuer); ok {
				if x, err := dv.Value(); err == nil {
					vals[i] = x
				}
			}
		}
		rows = append(rows, vals)
	}
	if err := r.Err(); err != nil {
		return nil, nil, fmt.Errorf("query postgres: %w", err)
	}
	return cols, rows, nil
}

// redactErr removes a password from an error's text.
func redactErr(err error, password string) error {
	if password == "" || !strings.Contains(err.Error(), password) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), password, "***"))
}

// text renders one value for table and CSV output; NULL is "".
func text(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case []byte:
		if utf8.Valid(x) {
			return string(x)
		}
		return base64.StdEncoding.EncodeToString(x)
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case fmt.Stringer:
		return x.String()
	case map[string]any, []any:
		b, _ := json.Marshal(x)
		return string(b)
	}
	return fmt.Sprint(v)
}

// jsonValue keeps numbers and booleans typed and renders the rest as text.
func jsonValue(v any) any {
	switch x := v.(type) {
	case nil, bool, int8, int16, int32, int64, uint8, uint16, uint32, uint64, int, float32, float64, map[string]any, []any:
		return x
	case *big.Int:
		return json.Number(x.String())
	}
	return text(v)
}

func writeTable(w io.Writer, cols []string, rows [][]any) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(cols, "\t"))
	for _, r := range rows {
		cells := make([]string, len(r))
		for i, v := range r {
			if v == nil {
				cells[i] = "NULL"
				continue
			}
			cells[i] = strings.NewReplacer("\t", `\t`, "\n", `\n`).Replace(text(v))
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	fmt.Fprintf(tw, "(%d rows)\n", len(rows))
	return tw.Flush()
}

func writeCSV(w io.Writer, cols []string, rows [][]any) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(cols); err != nil {
		return err
	}
	for _, r := range rows {
		rec := make([]string, len(r))
		for i, v := range r {
			rec[i] = text(v)
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

func writeJSON(w io.Writer, cols []string, rows [][]any) error {
	out := make([]json.RawMessage, 0, len(rows))
	for _, r := range rows {
		// Build the object by hand to keep the column order of the query.
		var b strings.Builder
		b.WriteByte('{')
		for i, v := range r {
			if i > 0 {
				b.WriteByte(',')
			}
			k, _ := json.Marshal(cols[i])
			val, err := json.Marshal(jsonValue(v))
			if err != nil {
				return fmt.Errorf("encode column %s: %w", cols[i], err)
			}
			b.Write(k)
			b.WriteByte(':')
			b.Write(val)
		}
		b.WriteByte('}')
		out = append(out, json.RawMessage(b.String()))
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(out)
}

func ddlCmd(s *streams) *cobra.Command {
	var dialect, path string
	c := &cobra.Command{
		Use:   "ddl --dialect duckdb|postgres|redshift [-c FILE]",
		Short: "Print the DDL of the event log, views and merged tables",
		Long: `ddl prints what a sink creates: the cdc_events log, dead letters, checkpoints
and tombstones, and for each table of the config file its merged table and
<table>_current view. cdcflow creates all of it by itself; ddl is for review
and for creating it ahead of time. The redshift dialect reproduces the SUPER
event-log design and adds a corrected incremental-sync stored procedure.`,
		Args: argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			var specs []sqlgen.TableSpec
			if path != "" {
				cfg, err := loadConfig(path)
				if err != nil {
					return err
				}
				specs = tableSpecs(cfg)
			}
			switch dialect {
			case "duckdb", "postgres", "redshift":
			default:
				return usagef("--dialect %q: want duckdb, postgres or redshift", dialect)
			}
			out, err := sqlgen.DDL(dialect, specs)
			if err != nil {
				return usageError{err}
			}
			_, err = io.WriteString(s.out, out)
			return err
		},
	}
	c.Flags().StringVar(&dialect, "dialect", "duckdb", "duckdb, postgres or redshift")
	c.Flags().StringVarP(&path, "config", "c", "", "config file whose tables section is printed")
	return c
}

// tableSpecs lists the config's tables for DDL.
func tableSpecs(cfg *config.Config) []sqlgen.TableSpec {
	soft := cfg.Sink.DuckDB != nil && cfg.Sink.DuckDB.SoftDelete || cfg.Sink.Postgres != nil && cfg.Sink.Postgres.SoftDelete
	naming := ""
	if cfg.Sink.DuckDB != nil {
		naming = cfg.Sink.DuckDB.TableNaming
	} else if cfg.Sink.Postgres != nil {
		naming = cfg.Sink.Postgres.TableNaming
	}
	var specs []sqlgen.TableSpec
	for name, t := range cfg.Tables {
		spec := sqlgen.TableSpec{Name: name, Key: t.Key, Columns: t.Columns, SoftDelete: soft}
		if schema, table, ok := strings.Cut(name, "."); ok {
			spec.Name, spec.Schema, spec.Source = table, schema, table
			if naming == "schema_table" {
				spec.Name = schema + "_" + table
			}
		}
		if t.SoftDelete != nil {
			spec.SoftDelete = *t.SoftDelete
		}
		specs = append(specs, spec)
	}
	return specs
}
