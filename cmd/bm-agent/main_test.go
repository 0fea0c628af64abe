package main

import (
	"bytes"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// TestNoRcloneFlags: the flags rclone registers on pflag.CommandLine when
// it loads (--cpuprofile, --memprofile, --stats, ...) are in no command's
// flags, help or completions.
func TestNoRcloneFlags(t *testing.T) {
	var foreign []*pflag.Flag
	pflag.CommandLine.VisitAll(func(f *pflag.Flag) { foreign = append(foreign, f) })
	names := map[string]bool{}
	for _, f := range foreign {
		names[f.Name] = true
	}
	for _, want := range []string{"cpuprofile", "memprofile", "stats"} {
		if !names[want] {
			t.Fatalf("rclone's --%s is not on pflag.CommandLine: the test no longer sees rclone's flags (%v)", want, names)
		}
	}

	root, _ := newRoot()
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, fs := range []*pflag.FlagSet{c.Flags(), c.InheritedFlags(), c.PersistentFlags(), c.LocalFlags()} {
			fs.VisitAll(func(f *pflag.Flag) {
				if slices.Contains(foreign, f) {
					t.Errorf("%s has rclone's --%s", c.CommandPath(), f.Name)
				}
			})
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)

	for _, args := range [][]string{{"--help"}, {"sync", "--help"}, {"__complete", "--"}, {"__complete", "run", "--"}} {
		root, _ := newRoot()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(io.Discard)
		root.SetArgs(args)
		if err := root.Execute(); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		for _, name := range []string{"--cpuprofile", "--memprofile", "--stats"} {
			if strings.Contains(out.String(), name) {
				t.Errorf("bm-agent %s shows %s:\n%s", strings.Join(args, " "), name, out.String())
			}
		}
		if !strings.Contains(out.String(), "--json") {
			t.Errorf("bm-agent %s does not show --json:\n%s", strings.Join(args, " "), out.String())
		}
	}
}

// TestRunFlagsAreSettings: each flag of `bm-agent run` that is a setting is
// passed to the resolver under its setting's key, and is one of run's flags.
func TestRunFlagsAreSettings(t *testing.T) {
	root, _ := newRoot()
	run, _, err := root.Find([]string{"run"})
	if err != nil {
		t.Fatal(err)
	}
	for key, name := range runFlags {
		if run.Flags().Lookup(strings.TrimPrefix(name, "--")) == nil {
			t.Errorf("setting %s: run has no %s", key, name)
		}
	}
}
