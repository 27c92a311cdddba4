package main

import (
	"context"
	"fmt"
	"io"

	"github.com/surgecommerce/surge/snowflake"
)

// runMigrate applies the schema migrations of the configured relational backend and reports
// what it did.
func runMigrate(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	c, _, err := parseConfig("migrate", args, env, stderr)
	if err != nil {
		return err
	}
	m, db, err := openStore(ctx, c, stderr)
	if err != nil {
		return err
	}
	defer m.Close()
	applied, err := db.Migrate(ctx)
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Fprintf(stdout, "%s schema is up to date\n", m.relationalName())
		return nil
	}
	fmt.Fprintf(stdout, "%s schema: applied versions %v\n", m.relationalName(), applied)
	return nil
}

// openStore opens the configured relational store for a command that works on it alone (the
// node it returns closes it).
func openStore(ctx context.Context, c *Config, stderr io.Writer) (*Main, relational, error) {
	log, err := newLogger(*c, stderr)
	if err != nil {
		return nil, nil, err
	}
	ids, err := snowflake.New(c.WorkerID)
	if err != nil {
		return nil, nil, err
	}
	m := NewMain(*c, log)
	db, err := m.openRelational(ctx, ids.Next)
	if err != nil {
		m.Close()
		return nil, nil, err
	}
	return m, db, nil
}
