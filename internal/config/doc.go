// Package config is cdcflow's configuration: the YAML schema, its defaults,
// strict decoding and validation, and the redaction of secrets.
//
// Load and Parse decode a file into a yaml.Node and walk it against the
// Config structs (reflecting over their `yaml` tags), so every problem names
// the file, the line and the dotted field path:
//
//	cdcflow.yaml:7: sink.duckdb.pth: unknown field (did you mean "path"?)
//	cdcflow.yaml:3: decode.format: expected a string, got a mapping
//	cdcflow.yaml:4: tables.orders.key: must list at least one column
//
// Invariants:
//   - Strict: unknown fields, values of the wrong type, duplicate keys, merge
//     keys, custom tags, a second YAML document and unset environment
//     variables are errors. All errors are collected and returned together
//     (errors.Join of *Error), sorted by line.
//   - ${NAME} and ${NAME:-default} are expanded in scalar values only (never
//     in keys), once, from the environment; $$ is a literal $. Expanded
//     values are not expanded again.
//   - Absent fields keep their defaults (Default, and the DefaultX variables
//     for sections that are present); a present but empty section (duckdb:)
//     takes its section's defaults.
//   - A Config returned by Parse or Load has passed Validate.
//   - Secrets (Secret, SecretURL) never print: not through fmt (any verb,
//     nested at any depth), YAML, JSON, text or slog, and never in an error
//     message. Redacted shows URLs with only the password replaced by ***.
//   - No I/O beyond reading the file in Load and looking up environment
//     variables: paths, brokers and URLs are checked for form, not reached.
package config
