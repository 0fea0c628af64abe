// Command bm-server is the Basic Memory tenant API: auth, tenants, a bucket
// per tenant, bucket-scoped keys and change events. With no flags it runs on
// loopback with its embedded defaults: a SQLite file, an embedded S3 endpoint
// on local disk and the built-in OAuth issuer.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/basicmachines-co/bm-agent/server"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bm-server:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return newRootCmd().ExecuteContext(ctx)
}

func defaultDataDir() string {
	if d := os.Getenv("BM_SERVER_DATA"); d != "" {
		return d
	}
	if d, err := os.UserConfigDir(); err == nil {
		return filepath.Join(d, "bm-server")
	}
	return "bm-server-data"
}

func newRootCmd() *cobra.Command {
	var cfg server.Config
	var jsonLogs bool
	root := &cobra.Command{
		Use:           "bm-server",
		Short:         "The Basic Memory tenant API with an embedded S3 endpoint and OAuth issuer",
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Logger = newLogger(jsonLogs)
			if cfg.DemoPassword == "" {
				cfg.DemoPassword = os.Getenv("BM_SERVER_DEMO_PASSWORD")
			}
			if cfg.DemoEmail != "" && cfg.DemoPassword == "" {
				return errors.New("--demo-email needs a password in BM_SERVER_DEMO_PASSWORD")
			}
			srv, err := server.New(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			return srv.Serve(cmd.Context())
		},
	}
	f := root.Flags()
	f.StringVar(&cfg.Addr, "addr", "127.0.0.1:8787", "API listen address")
	f.StringVar(&cfg.S3Addr, "s3-addr", "127.0.0.1:8788", "embedded S3 endpoint listen address")
	f.StringVar(&cfg.PublicURL, "public-url", "", "API base URL as clients see it (default http://ADDR)")
	f.StringVar(&cfg.S3PublicURL, "s3-public-url", "", "S3 endpoint URL as clients see it (default http://S3-ADDR)")
	f.StringVar(&cfg.DataDir, "data-dir", defaultDataDir(), "where the database, buckets and keys live (env BM_SERVER_DATA)")
	f.StringVar(&cfg.SubscribeURL, "subscribe-url", "", "URL shown to tenants without an active subscription")
	f.StringVar(&cfg.DemoEmail, "demo-email", "", "create this account at start if missing (password from BM_SERVER_DEMO_PASSWORD)")
	f.BoolVar(&jsonLogs, "log-json", false, "write logs as JSON")
	root.AddCommand(newUserCmd(&cfg))
	return root
}

func newLogger(jsonLogs bool) *slog.Logger {
	if jsonLogs {
		return slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, nil))
}

func newUserCmd(cfg *server.Config) *cobra.Command {
	user := &cobra.Command{Use: "user", Short: "Manage accounts"}
	add := &cobra.Command{
		Use:     "add EMAIL",
		Short:   "Create an account with its tenant and bucket (password from BM_SERVER_PASSWORD)",
		Example: "  BM_SERVER_PASSWORD=... bm-server user add me@example.com --data-dir /var/lib/bm-server",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pw := os.Getenv("BM_SERVER_PASSWORD")
			if pw == "" {
				return errors.New("set the password in BM_SERVER_PASSWORD")
			}
			c := *cfg
			c.Addr, c.S3Addr = "127.0.0.1:0", "127.0.0.1:0"
			c.Logger = newLogger(false)
			srv, err := server.New(cmd.Context(), c)
			if err != nil {
				return err
			}
			defer srv.Close()
			acc, err := srv.CreateAccount(cmd.Context(), args[0], pw)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "created %s (tenant %s)\n", acc.Email, acc.TenantID)
			return nil
		},
	}
	add.Flags().StringVar(&cfg.DataDir, "data-dir", defaultDataDir(), "data dir of the server")
	user.AddCommand(add)
	return user
}
