package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/cdcflow/cdcflow/internal/config"
	"github.com/cdcflow/cdcflow/internal/decode"
)

func validateCmd(s *streams) *cobra.Command {
	var path string
	c := &cobra.Command{
		Use:   "validate -c FILE",
		Short: "Check a config file and print it with secrets redacted",
		Args:  argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			if path == "" {
				return usagef("validate: -c FILE is required")
			}
			cfg, err := loadConfig(path)
			if err != nil {
				return err
			}
			fmt.Fprintf(s.err, "%s: ok\n", path)
			fmt.Fprint(s.out, cfg.Redacted())
			return nil
		},
	}
	c.Flags().StringVarP(&path, "config", "c", "", "config file (YAML)")
	return c
}

// loadConfig loads and validates a config file; every error is a usage error.
func loadConfig(path string) (*config.Config, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, usageError{err}
	}
	if err := cfg.Validate(); err != nil {
		return nil, usageError{fmt.Errorf("%s: %w", path, err)}
	}
	return cfg, nil
}

// decodeOptions maps the config's decode and tables sections.
func decodeOptions(cfg *config.Config) decode.Options {
	return decode.Options{
		Format:           cfg.Decode.Format,
		Keys:             cfg.Keys(),
		MaxFragmentBytes: int64(cfg.Decode.MaxFragmentBytes),
		FragmentTimeout:  time.Duration(cfg.Decode.FragmentTimeout),
	}
}
