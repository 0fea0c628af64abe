// Command bm-server is the Basic Memory tenant API: auth, tenants, a bucket
// per tenant, bucket-scoped keys and change events. With no flags it runs on
// loopback with its embedded defaults: a SQLite file, an embedded S3 endpoint
// on local disk and the built-in OAuth issuer. --storage minio|s3|tigris
// uses an external object store instead (admin credentials in
// BM_SERVER_STORAGE_ACCESS_KEY and BM_SERVER_STORAGE_SECRET_KEY), --auth-mode
// oidc an external OIDC issuer; --hook-command or --hook-webhook-url tell
// the indexing service about bucket changes, and
// BM_SERVER_STORAGE_WEBHOOK_SECRET enables storage notifications.
//
// Its subcommands are the operator's tools: tenant, user, key, audit,
// migrate and keys (the issuer's signing keys). Every setting is a flag, an environment variable
// (BM_SERVER_<FLAG>) or a key of the config file (--config), in that order
// of precedence.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/basicmachines-co/bm-agent/internal/buildinfo"
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
	return newRootCmd(os.Getenv, os.Stderr).ExecuteContext(ctx)
}

func defaultDataDir() string {
	if d, err := os.UserConfigDir(); err == nil {
		return filepath.Join(d, "bm-server")
	}
	return "bm-server-data"
}

// app is what the commands share: the configuration and the environment.
type app struct {
	cfg    server.Config
	getenv func(string) string
	logw   io.Writer // where logs go
	json   bool
}

func newLogger(w io.Writer, jsonLogs bool, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if jsonLogs {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// newRootCmd builds the command tree. getenv is the environment (tests pass
// their own); logs go to logw.
func newRootCmd(getenv func(string) string, logw io.Writer) *cobra.Command {
	a := &app{getenv: getenv, logw: logw}
	a.cfg.DataDir = defaultDataDir()
	root := &cobra.Command{
		Use:           "bm-server",
		Short:         "The Basic Memory tenant API with an embedded S3 endpoint and OAuth issuer",
		Version:       buildinfo.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			server.SecretsFromEnv(&a.cfg, a.getenv)
			return server.ResolveConfig(cmd.Flags(), a.getenv)
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := a.cfg
			cfg.Logger = newLogger(a.logw, cfg.LogJSON, slog.LevelInfo)
			if cfg.DemoEmail != "" && cfg.DemoPassword == "" {
				return errors.New("--demo-email needs a password in " + server.EnvDemoPassword)
			}
			srv, err := server.New(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			return srv.Serve(cmd.Context())
		},
	}
	root.SetVersionTemplate(buildinfo.String("bm-server") + "\n")
	server.BindFlags(root.Flags(), &a.cfg)
	server.BindStoreFlags(root.PersistentFlags(), &a.cfg)
	root.AddCommand(a.migrateCmd(), a.tenantCmd(), a.userCmd(), a.keyCmd(), a.auditCmd())
	root.AddCommand(a.keysCmd()) // keys.go
	return root
}

// withServer runs fn with a server on the configured store and storage, on
// throwaway loopback ports, for the commands that touch the provider.
func (a *app) withServer(ctx context.Context, fn func(*server.Server) error) error {
	c := a.cfg
	c.Addr, c.S3Addr = "127.0.0.1:0", "127.0.0.1:0"
	// The admin commands verify no tokens: do not reach an external issuer.
	c.AuthMode = server.AuthBuiltin
	c.Logger = newLogger(a.logw, c.LogJSON, slog.LevelWarn)
	srv, err := server.New(ctx, c)
	if err != nil {
		return err
	}
	defer srv.Close()
	return fn(srv)
}

func (a *app) password() (string, error) {
	pw := a.getenv("BM_SERVER_PASSWORD")
	if pw == "" {
		return "", errors.New("set the password in BM_SERVER_PASSWORD")
	}
	return pw, nil
}

// group is a command that only holds subcommands and the --json flag.
func (a *app) group(use, short string) *cobra.Command {
	c := &cobra.Command{Use: use, Short: short}
	c.PersistentFlags().BoolVar(&a.json, "json", false, "print JSON instead of a table")
	return c
}
