package postgres

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cdcflow/cdcflow/internal/sink"
)

// classify wraps err with sink.ErrPermanent when retrying cannot help
// because the data itself is at fault: SQLSTATE class 22 (data exception:
// a value out of range, text jsonb rejects) and class 23 (integrity
// constraint violation), except unique violations on the system catalogs,
// which two writers creating the same object at once can cause. Everything
// else is retryable: connection errors (refused, reset, closed; class 08),
// serialization failures (40001), deadlocks (40P01), shutdowns (57P01..03),
// too many connections (53300), other resource, catalog and permission
// errors an operator can fix.
func classify(err error) error {
	if err == nil || errors.Is(err, sink.ErrPermanent) {
		return err
	}
	if Permanent(err) {
		return fmt.Errorf("%w: %w", sink.ErrPermanent, err)
	}
	return err
}

// Permanent reports whether err is a PostgreSQL error that the data causes
// (see classify).
func Permanent(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false // connection-level: retryable
	}
	switch {
	case strings.HasPrefix(pe.Code, "22"):
		return true
	case strings.HasPrefix(pe.Code, "23"):
		return !(pe.Code == "23505" && strings.HasPrefix(pe.ConstraintName, "pg_"))
	}
	return false
}

// connectionLost reports whether err means the connection is unusable, so
// the next Apply must reconnect.
func connectionLost(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return strings.HasPrefix(pe.Code, "08") || strings.HasPrefix(pe.Code, "57P")
	}
	return err != nil
}

// redactor removes a connection string's secrets from text.
type redactor struct {
	secrets []string // longest first
}

func newRedactor(connString string) redactor {
	var r redactor
	add := func(s string) {
		if len(s) >= 3 {
			r.secrets = append(r.secrets, s)
		}
	}
	add(connString)
	if u, err := url.Parse(connString); err == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok {
			add(pw)
			add(url.QueryEscape(pw))
			add(url.PathEscape(pw))
		}
	}
	if u, err := url.Parse(connString); err == nil {
		for _, k := range []string{"password", "sslpassword"} {
			if v := u.Query().Get(k); v != "" {
				add(v)
			}
		}
	}
	for _, f := range strings.Fields(connString) {
		k, v, ok := strings.Cut(f, "=")
		if ok && (strings.EqualFold(strings.TrimSpace(k), "password") || strings.EqualFold(strings.TrimSpace(k), "sslpassword")) {
			add(strings.Trim(v, "'"))
		}
	}
	for i := 1; i < len(r.secrets); i++ {
		for j := i; j > 0 && len(r.secrets[j]) > len(r.secrets[j-1]); j-- {
			r.secrets[j], r.secrets[j-1] = r.secrets[j-1], r.secrets[j]
		}
	}
	return r
}

func (r redactor) text(s string) string {
	for _, sec := range r.secrets {
		s = strings.ReplaceAll(s, sec, "***")
	}
	return s
}

// err returns err with the secrets removed from its text; errors.Is and
// errors.As still see the original chain.
func (r redactor) err(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	clean := r.text(msg)
	if clean == msg {
		return err
	}
	return &redactedError{msg: clean, err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }
