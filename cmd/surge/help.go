package main

import (
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// command is what a subcommand's help says: every command of surge prints it in one style
// (what it does, its flags as --name [ENVIRONMENT_VARIABLE] with their defaults, examples),
// and --help exits 0.
type command struct {
	name     string // as typed after surge: "serve", "bench stock"
	about    string
	examples []string
	// env names the environment variable a flag is also read from ("" for none).
	env func(flagName string) string
	// envInDefault: the command takes a variable's value as its flag's default, so the
	// default shown would be the variable's value (a password, say): it is not shown.
	envInDefault bool
}

// flagSet returns an empty flag set whose usage is the command's help.
func (c command) flagSet(out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() { c.usage(fs) }
	return fs
}

// envFlags is an env function for the few flags of a command that read a variable.
func envFlags(m map[string]string) func(string) string { return func(n string) string { return m[n] } }

func (c command) usage(fs *flag.FlagSet) {
	out := fs.Output()
	fmt.Fprintf(out, "Usage: surge %s [flags]\n\n%s\n\nFlags:\n", c.name, strings.TrimSpace(c.about))
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	sort.Strings(names)
	for _, n := range names {
		f := fs.Lookup(n)
		head := "  --" + n
		env := ""
		if c.env != nil {
			env = c.env(n)
		}
		if env != "" {
			head += "  [" + env + "]"
		}
		def := ""
		if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "false" && (env == "" || !c.envInDefault) {
			def = " (default " + f.DefValue + ")"
		}
		fmt.Fprintf(out, "%s\n        %s%s\n", head, f.Usage, def)
	}
	if len(c.examples) > 0 {
		fmt.Fprintf(out, "\nExamples:\n")
		for _, e := range c.examples {
			fmt.Fprintf(out, "  %s\n", e)
		}
	}
}
