package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/deadletter"
	"github.com/cdcflow/cdcflow/internal/decode"
	"github.com/cdcflow/cdcflow/internal/source"
	"github.com/cdcflow/cdcflow/internal/source/file"
)

// inspectEvent is the JSON line inspect prints per event; its keys are a
// public contract.
type inspectEvent struct {
	Schema     string          `json:"schema"`
	Table      string          `json:"table"`
	Op         change.Op       `json:"op"`
	Key        string          `json:"key"`
	KeyColumns []string        `json:"key_columns"`
	CommitTSNS int64           `json:"commit_ts_ns"`
	Seq        string          `json:"seq"`
	TxID       string          `json:"tx_id"`
	Before     json.RawMessage `json:"before"`
	After      json.RawMessage `json:"after"`
	Position   string          `json:"position"`
}

// decodeFlags are the decoding flags shared by inspect and load.
type decodeFlags struct {
	format string
	keys   []string
	config string
}

func (f *decodeFlags) register(c *cobra.Command) {
	c.Flags().StringVar(&f.format, "format", "", "record format: auto, dsql, debezium, dms, dynamodb (default auto, or decode.format from -c)")
	c.Flags().StringArrayVar(&f.keys, "key", nil, "key columns of a table, TABLE=col1,col2 (repeatable; TABLE may be schema.table)")
	c.Flags().StringVarP(&f.config, "config", "c", "", "config file whose decode and tables sections apply")
}

// options builds decode options from the config file (if any) and flags;
// flags win.
func (f *decodeFlags) options() (decode.Options, error) {
	opts := decode.Options{Keys: &change.Keys{Tables: map[string][]string{}}}
	if f.config != "" {
		cfg, err := loadConfig(f.config)
		if err != nil {
			return opts, err
		}
		opts = decodeOptions(cfg)
	}
	if f.format != "" {
		opts.Format = f.format
	}
	for _, kv := range f.keys {
		table, cols, err := parseKeyFlag(kv)
		if err != nil {
			return opts, usageError{err}
		}
		opts.Keys.Tables[table] = cols
	}
	if _, err := decode.New(opts); err != nil {
		return opts, usageError{fmt.Errorf("--format: %w", err)}
	}
	return opts, nil
}

// parseKeyFlag parses "orders=order_id" or "public.items=order_id,line_no".
func parseKeyFlag(kv string) (string, []string, error) {
	table, list, ok := strings.Cut(kv, "=")
	table = strings.TrimSpace(table)
	if !ok || table == "" || strings.TrimSpace(list) == "" {
		return "", nil, fmt.Errorf("--key %q: want TABLE=col1,col2", kv)
	}
	var cols []string
	for _, c := range strings.Split(list, ",") {
		c = strings.TrimSpace(c)
		if c == "" {
			return "", nil, fmt.Errorf("--key %q: empty column name", kv)
		}
		cols = append(cols, c)
	}
	return table, cols, nil
}

func inspectCmd(s *streams) *cobra.Command {
	var df decodeFlags
	c := &cobra.Command{
		Use:   "inspect [flags] FILE...|-",
		Short: "Print the normalized change events of CDC records as JSON lines",
		Long: `inspect decodes files (or - for stdin; gzip is detected) and prints one JSON
line per normalized event on stdout with the keys schema, table, op, key,
key_columns, commit_ts_ns, seq, tx_id, before, after, position. Records that
cannot become events are printed as dead-letter JSON lines on stderr, then a
summary. The exit code is 0 even when there are dead letters.`,
		Example: `  cdcflow inspect examples/data/*
  cdcflow inspect --format debezium --key orders=order_id orders.ndjson
  zcat dump.ndjson.gz | cdcflow inspect -`,
		Args: argsUsage(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := df.options()
			if err != nil {
				return err
			}
			return inspect(cmd, s, args, opts)
		},
	}
	df.register(c)
	return c
}

func inspect(cmd *cobra.Command, s *streams, paths []string, opts decode.Options) error {
	ctx := cmd.Context()
	src, err := file.Open(paths, file.Options{Stdin: s.in})
	if err != nil {
		return usageError{err}
	}
	defer src.Close(ctx)
	dec, err := decode.New(opts)
	if err != nil {
		return usageError{err}
	}
	out := bufio.NewWriterSize(s.out, 1<<16)
	defer out.Flush()
	dlw := deadletter.New(s.err, "stderr")
	var batch decode.Output
	for {
		raws, ack, err := src.Read(ctx)
		if errors.Is(err, source.ErrEndOfInput) {
			break
		}
		if err != nil {
			return err
		}
		batch.Reset()
		for _, r := range raws {
			dec.Decode(r, time.Now(), &batch)
		}
		if err := writeInspect(out, dlw, &batch); err != nil {
			return err
		}
		if err := ack(ctx, nil); err != nil {
			return err
		}
	}
	batch.Reset()
	dec.Drain(&batch)
	if err := writeInspect(out, dlw, &batch); err != nil {
		return err
	}
	if err := out.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(s.err, inspectSummary(dec.Stats()))
	return nil
}

func writeInspect(out *bufio.Writer, dlw *deadletter.Writer, o *decode.Output) error {
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	for i := range o.Events {
		e := &o.Events[i]
		if err := enc.Encode(inspectEvent{
			Schema: e.Schema, Table: e.Table, Op: e.Op, Key: e.Key, KeyColumns: e.KeyColumns,
			CommitTSNS: e.Order.CommitNS, Seq: e.Order.Seq, TxID: e.TxID,
			Before: e.Before, After: e.After, Position: e.Position.String(),
		}); err != nil {
			return fmt.Errorf("write event at %s: %w", e.Position, err)
		}
	}
	if len(o.Dead) == 0 {
		return nil
	}
	if err := out.Flush(); err != nil { // keep stdout and stderr roughly in step
		return err
	}
	if err := dlw.Write(o.Dead); err != nil {
		return err
	}
	return dlw.Flush()
}

func inspectSummary(st decode.Stats) string {
	var b strings.Builder
	fmt.Fprintf(&b, "inspect: %d records, %d events", st.Records, st.Events)
	fmt.Fprintf(&b, ", %d dead letters%s", sum(st.Dead), byReason(st.Dead))
	fmt.Fprintf(&b, ", %d skipped%s", sum(st.Skipped), byReason(st.Skipped))
	if st.UnknownOps > 0 {
		fmt.Fprintf(&b, ", %d unknown ops applied as upserts", st.UnknownOps)
	}
	return b.String()
}

func sum(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// byReason renders " (reason n, reason n)" sorted by reason, or "".
func byReason(m map[string]int64) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return " (" + strings.Join(parts, ", ") + ")"
}
