// Command bm-bench runs the benchmark of issue 12 (package bench): it
// builds bm-agent, bm-server and rclone, measures bm-agent against the
// seed's command on generated trees, prints the table, and writes it to
// docs/BENCHMARKS.md and every sample to a JSON file. `make bench` and
// `make bench-short` run it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/basicmachines-co/bm-agent/bench"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bm-bench:", err)
		os.Exit(1)
	}
}

func run() error {
	short := flag.Bool("short", false, "bench-short: 1k and 10k notes, fewer samples (under 5 minutes)")
	sizes := flag.String("sizes", "", "tree sizes in notes, comma-separated (default: 1000,10000,50000; -short 1000,10000)")
	full := flag.String("full", "", "sizes at which every figure is measured (default: the largest two; -short the largest)")
	bin := flag.String("bin", "bin", "where to build bm-agent, bm-server and rclone")
	out := flag.String("json", "", "the JSON report (default: BIN/bench.json, or BIN/bench-short.json)")
	doc := flag.String("doc", "docs/BENCHMARKS.md", "the markdown file whose section this run replaces (\"\": none)")
	rounds := flag.Int("rounds", 0, "no-change rounds (default: 5; -short 3)")
	edits := flag.Int("edits", 0, "local → bucket samples (default: 20; -short 12)")
	idle := flag.Duration("idle", 0, "how long to watch the idle daemon (default 1m)")
	keep := flag.Bool("keep", false, "keep each size's trees and logs")
	flag.Parse()

	cfg := bench.Bench()
	if *short {
		cfg = bench.Short()
	}
	var err error
	if *sizes != "" {
		if cfg.Sizes, err = parseSizes(*sizes); err != nil {
			return err
		}
		cfg.FullSizes = cfg.Sizes[max(0, len(cfg.Sizes)-2):]
		if *short {
			cfg.FullSizes = cfg.Sizes[len(cfg.Sizes)-1:]
		}
	}
	if *full != "" {
		if cfg.FullSizes, err = parseSizes(*full); err != nil {
			return err
		}
	}
	if *rounds > 0 {
		cfg.Rounds = *rounds
	}
	if *edits > 0 {
		cfg.Edits = *edits
	}
	if *idle > 0 {
		cfg.Idle = *idle
	}
	cfg.Bin, cfg.Keep, cfg.Log = *bin, *keep, os.Stdout
	flag.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "sizes", "full", "rounds", "edits", "idle":
			cfg.Invocation = "go run ./cmd/bm-bench " + strings.Join(os.Args[1:], " ")
		}
	})
	if *out == "" {
		*out = cfg.Bin + "/" + cfg.Mode + ".json"
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	fmt.Printf("bm-bench: building bm-agent, bm-server and rclone into %s\n", cfg.Bin)
	rcloneVersion, err := bench.Build(ctx, cfg.Bin)
	if err != nil {
		return err
	}
	fmt.Printf("bm-bench: built in %s (rclone %s); sizes %v, every figure at %v\n", time.Since(start).Round(time.Second), rcloneVersion, cfg.Sizes, cfg.FullSizes)
	rep, err := bench.Run(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Print(rep.Text())
	if err := rep.WriteJSON(*out); err != nil {
		return err
	}
	fmt.Printf("bm-bench: wrote %s", *out)
	if *doc != "" {
		if err := bench.WriteDoc(*doc, rep); err != nil {
			return err
		}
		fmt.Printf(" and %s", *doc)
	}
	fmt.Printf(" (%s in all)\n", time.Since(start).Round(time.Second))
	return nil
}

func parseSizes(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 10 {
			return nil, errors.New("sizes: want numbers of notes (10 or more), comma-separated: " + s)
		}
		out = append(out, n)
	}
	return out, nil
}
