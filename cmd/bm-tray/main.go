// Command bm-tray is the Basic Memory system tray: a pure client of the
// bm-agent daemon.
package main

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/basicmachines-co/bm-agent/ipc"
	"github.com/basicmachines-co/bm-agent/ui/tray"
)

func main() {
	socket := flag.String("socket", ipc.DefaultSocketPath(), "the daemon's socket")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	tray.Run(ctx, ipc.NewClient(*socket), slog.New(slog.NewTextHandler(os.Stderr, nil)))
}
