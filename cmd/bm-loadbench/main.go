// Command bm-loadbench is bm-server's fleet load test (`make bench-load`):
// several replicas on one PostgreSQL and one MinIO, thousands of simulated
// devices, one replica killed midway. See package bench/load.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"

	"github.com/basicmachines-co/bm-agent/bench/load"
)

func main() {
	cfg := load.Default()
	short := flag.Bool("short", false, "the short form CI runs (200 devices of 50 tenants, 15 s)")
	bin := flag.String("bin", "bin", "directory holding bm-server")
	jsonOut := flag.String("json", "", "also write the report as JSON to this file")
	flag.IntVar(&cfg.Replicas, "replicas", cfg.Replicas, "bm-server replicas")
	flag.IntVar(&cfg.Devices, "devices", cfg.Devices, "simulated devices")
	flag.IntVar(&cfg.Tenants, "tenants", cfg.Tenants, "tenants")
	flag.DurationVar(&cfg.Duration, "duration", cfg.Duration, "how long the devices work after the ramp")
	flag.BoolVar(&cfg.Kill, "kill", cfg.Kill, "kill one replica halfway")
	flag.Parse()
	if *short {
		s := load.Short()
		s.Kill = cfg.Kill
		cfg = s
	}
	abs, err := filepath.Abs(*bin)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cfg.Bin, cfg.Log = abs, os.Stderr
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	rep, err := load.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	rep.Print(os.Stdout)
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(*jsonOut, b, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	if rep.Errors > 0 || rep.Lost > 0 {
		fmt.Fprintf(os.Stderr, "load: %d errors, %d events lost (goal: none)\n", rep.Errors, rep.Lost)
		os.Exit(2)
	}
}
