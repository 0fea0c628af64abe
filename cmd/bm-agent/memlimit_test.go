package main

import (
	"io"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"testing"
)

// TestLimitMemory: the daemon sets its own soft memory limit, unless
// GOMEMLIMIT says what the limit is, which the daemon leaves alone.
func TestLimitMemory(t *testing.T) {
	orig := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(orig) })
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	cases := []struct {
		name   string
		env    string // "" unset
		before int64
		want   int64
	}{
		{name: "no GOMEMLIMIT: the daemon's limit", before: math.MaxInt64, want: daemonMemoryLimit},
		{name: "GOMEMLIMIT=off: none", env: "off", before: math.MaxInt64, want: math.MaxInt64},
		{name: "GOMEMLIMIT=1GiB: the runtime's", env: "1GiB", before: 1 << 30, want: 1 << 30},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env == "" {
				if v, ok := os.LookupEnv("GOMEMLIMIT"); ok {
					t.Setenv("GOMEMLIMIT", v) // restored after
				}
				os.Unsetenv("GOMEMLIMIT")
			} else {
				t.Setenv("GOMEMLIMIT", tc.env)
			}
			// The runtime reads GOMEMLIMIT once, at start: set what it
			// would have read.
			debug.SetMemoryLimit(tc.before)
			limitMemory(logger)
			if got := debug.SetMemoryLimit(-1); got != tc.want {
				t.Errorf("memory limit %d, want %d", got, tc.want)
			}
		})
	}
}
