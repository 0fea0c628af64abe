// Command bm-tray is the Basic Memory system tray: a pure client of the
// bm-agent daemon, with its desktop notifications.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/basicmachines-co/bm-agent/internal/buildinfo"
	"github.com/basicmachines-co/bm-agent/ipc"
	"github.com/basicmachines-co/bm-agent/ui/notify"
	"github.com/basicmachines-co/bm-agent/ui/tray"
)

func main() {
	socket := flag.String("socket", ipc.DefaultSocketPath(), "the daemon's socket")
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *showVersion {
		fmt.Println(buildinfo.String("bm-tray"))
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	c := ipc.NewClient(*socket)
	tray.Run(ctx, c, logger.With("component", "tray"), tray.WithNotifier(func(ctx context.Context, onClick func(string)) error {
		return notify.Run(ctx, c, notify.Options{Logger: logger.With("component", "notify"), OnClick: onClick})
	}))
}
