package main

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/basicmachines-co/bm-agent/server"
	"github.com/basicmachines-co/bm-agent/server/issuer"
	"github.com/basicmachines-co/bm-agent/server/keyring"
)

// keysCmd is `bm-server keys`: the built-in issuer's signing keys, kept
// in the database when a master key is set (not the mount keys of `key`).
func (a *app) keysCmd() *cobra.Command {
	g := a.group("keys", "Manage the built-in issuer's token signing keys (in the database, with a master key)")
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Make a new key sign tokens; the old one verifies the tokens it signed until they expire (needs the master key)",
		Long: "Make a new key the signing key of every server on the database. The old key stays in the JWKS and verifies\n" +
			"the tokens it signed until they have expired. Running servers sign with the new key within " + issuer.DefaultKeyReloadInterval.String() + "\n" +
			"and verify its tokens at once. Needs the master key (" + server.EnvMasterKey + " or --master-key-file).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := a.cfg
			cfg.Logger = newLogger(a.logw, cfg.LogJSON, slog.LevelWarn)
			retired, active, err := server.RotateSigningKey(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			if a.json {
				return a.print(cmd.OutOrStdout(), map[string]keyring.KeyInfo{"active": active, "retired": retired}, nil, nil)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "signing key %s is active; %s is retired and verifies the tokens it signed until %s\n",
				active.KID, retired.KID, whenPtr(retired.VerifiesUntil))
			return nil
		},
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the signing keys: kid, state, created, retired (no secret)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			keys, err := server.ListSigningKeys(cmd.Context(), a.cfg)
			if err != nil {
				return err
			}
			if len(keys) == 0 && !a.json {
				fmt.Fprintln(cmd.ErrOrStderr(), "no signing keys in the database yet: the first server started with the master key sets them up; without one, the signing key is the data dir's issuer.pem")
			}
			return a.printSigningKeys(cmd.OutOrStdout(), keys)
		},
	}
	g.AddCommand(rotate, list)
	return g
}

func (a *app) printSigningKeys(w io.Writer, keys []keyring.KeyInfo) error {
	view := func(k keyring.KeyInfo) keyring.KeyInfo { return k }
	return printList(a, w, keys, view, []string{"KID", "STATE", "CREATED", "RETIRED", "VERIFIES UNTIL"}, func(k keyring.KeyInfo) []string {
		return []string{k.KID, k.State, when(k.CreatedAt), whenPtr(k.RetiredAt), whenPtr(k.VerifiesUntil)}
	})
}
