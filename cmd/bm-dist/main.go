// Command bm-dist makes bm-agent's release into dist/ (make dist): every
// platform's archive, the deb and rpm packages, the Homebrew formula and
// the checksums (see packaging/dist). The version, commit and date come
// from git unless given.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/basicmachines-co/bm-agent/packaging/dist"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bm-dist:", err)
		os.Exit(1)
	}
}

func run() error {
	out := flag.String("out", "dist", "where the release goes (emptied first)")
	version := flag.String("version", "", "the version to stamp (default: from git tags, see packaging/dist.FromGit)")
	targets := flag.String("targets", "all", "os/arch list, comma-separated; all: "+fmt.Sprint(dist.Matrix)+"; host: this machine's")
	packages := flag.String("packages", "deb,rpm", "Linux packages to make (deb, rpm; empty for none)")
	noArchives := flag.Bool("no-archives", false, "make no archives (and so no formula)")
	url := flag.String("formula-url", "https://github.com/basicmachines-co/bm-agent/releases/download/v{version}", "where the formula downloads the archives")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	root, err := os.Getwd()
	if err != nil {
		return err
	}
	stamp, err := dist.FromGit(ctx, root)
	if err != nil {
		return err
	}
	if *version != "" {
		stamp.Version = strings.TrimPrefix(*version, "v")
	}
	ts, err := dist.ParseTargets(*targets)
	if err != nil {
		return err
	}
	var formats []string
	for _, f := range strings.Split(*packages, ",") {
		if f = strings.TrimSpace(f); f != "" {
			formats = append(formats, f)
		}
	}
	outDir, err := filepath.Abs(*out)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(outDir); err != nil {
		return err
	}
	fmt.Printf("bm-dist: %s (commit %s, %s) for %v\n", stamp.Version, stamp.Commit, stamp.Date, ts)
	start := time.Now()
	rel, err := dist.Build(ctx, dist.Config{
		Root: root, Out: outDir,
		Version: stamp.Version, Commit: stamp.Commit, Date: stamp.Date,
		Targets: ts, Archives: !*noArchives, Packages: formats, Formula: !*noArchives, FormulaURL: *url,
		Log: os.Stdout,
	})
	if err != nil {
		return err
	}
	skipped := make([]string, 0, len(rel.Skipped))
	for t, why := range rel.Skipped {
		skipped = append(skipped, fmt.Sprintf("%s: no bm-tray: %s", t, why))
	}
	sort.Strings(skipped)
	for _, s := range skipped {
		fmt.Println("bm-dist:", s)
	}
	for _, a := range rel.Artifacts {
		fi, err := os.Stat(a.Path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, a.Path)
		fmt.Printf("  %-9s %6.1f MB  %s\n", a.Kind, float64(fi.Size())/1e6, rel)
	}
	fmt.Printf("bm-dist: done in %s\n", time.Since(start).Round(time.Second))
	return nil
}
