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
	log, err := newLogger(*c, stderr)
	if err != nil {
		return err
	}
	ids, err := snowflake.New(c.WorkerID)
	if err != nil {
		return err
	}
	m := NewMain(*c, log)
	defer m.Close()
	db, err := m.openRelational(ctx, ids.Next)
	if err != nil {
		return err
	}
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
