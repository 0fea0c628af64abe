package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/basicmachines-co/bm-agent/server"
	"github.com/basicmachines-co/bm-agent/server/store"
)

// Wire shapes of --json output.
type (
	tenantOut struct {
		ID                 string    `json:"id"`
		Status             string    `json:"status"`
		SubscriptionStatus string    `json:"subscription_status"`
		SubscriptionTier   string    `json:"subscription_tier"`
		Bucket             string    `json:"bucket"`
		CreatedAt          time.Time `json:"created_at"`
	}
	accountOut struct {
		ID         string     `json:"id"`
		Email      string     `json:"email"`
		TenantID   string     `json:"tenant_id"`
		CreatedAt  time.Time  `json:"created_at"`
		DisabledAt *time.Time `json:"disabled_at,omitempty"`
	}
	keyOut struct {
		ID             string     `json:"id"`
		TenantID       string     `json:"tenant_id"`
		AccessKey      string     `json:"access_key"`
		Description    string     `json:"description"`
		CreatedAt      time.Time  `json:"created_at"`
		LastUsedAt     *time.Time `json:"last_used_at"`
		RevokedAt      *time.Time `json:"revoked_at"`
		DeletionStatus string     `json:"deletion_status"`
	}
	auditOut struct {
		ID        int64     `json:"id"`
		TenantID  string    `json:"tenant_id"`
		Kind      string    `json:"kind"`
		Detail    string    `json:"detail"`
		CreatedAt time.Time `json:"created_at"`
	}
)

func tenantView(t store.Tenant) tenantOut {
	return tenantOut{t.ID, t.Status, t.SubscriptionStatus, t.SubscriptionTier, t.BucketName, t.CreatedAt}
}

func accountView(a store.Account) accountOut { // never the password hash
	return accountOut{a.ID, a.Email, a.TenantID, a.CreatedAt, a.DisabledAt}
}

func keyView(c store.Credential) keyOut {
	return keyOut{c.ID, c.TenantID, c.AccessKey, c.Description, c.CreatedAt, c.LastUsedAt, c.RevokedAt, c.DeletionStatus}
}

// table prints rows under header, tab-aligned.
func table(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

func (a *app) print(w io.Writer, v any, header []string, rows [][]string) error {
	if a.json {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	return table(w, header, rows)
}

func when(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func whenPtr(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return when(*t)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// printList prints items as their JSON views or as table rows under header.
func printList[T, V any](a *app, w io.Writer, items []T, view func(T) V, header []string, row func(T) []string) error {
	out := make([]V, 0, len(items))
	var rows [][]string
	for _, it := range items {
		out = append(out, view(it))
		rows = append(rows, row(it))
	}
	return a.print(w, out, header, rows)
}

func (a *app) printTenants(w io.Writer, ts []store.Tenant) error {
	return printList(a, w, ts, tenantView, []string{"ID", "STATUS", "SUBSCRIPTION", "TIER", "BUCKET", "CREATED"}, func(t store.Tenant) []string {
		return []string{t.ID, t.Status, t.SubscriptionStatus, dash(t.SubscriptionTier), dash(t.BucketName), when(t.CreatedAt)}
	})
}

func (a *app) printAccounts(w io.Writer, as []store.Account) error {
	return printList(a, w, as, accountView, []string{"ID", "EMAIL", "TENANT", "CREATED", "DISABLED"}, func(acc store.Account) []string {
		return []string{acc.ID, acc.Email, acc.TenantID, when(acc.CreatedAt), whenPtr(acc.DisabledAt)}
	})
}

func (a *app) printKeys(w io.Writer, cs []store.Credential) error {
	return printList(a, w, cs, keyView, []string{"ID", "TENANT", "ACCESS KEY", "CREATED", "LAST USED", "REVOKED", "DELETION", "DESCRIPTION"}, func(c store.Credential) []string {
		return []string{c.ID, c.TenantID, c.AccessKey, when(c.CreatedAt), whenPtr(c.LastUsedAt), whenPtr(c.RevokedAt), dash(c.DeletionStatus), dash(c.Description)}
	})
}

func (a *app) printAudit(w io.Writer, ev []store.AuditEvent) error {
	view := func(e store.AuditEvent) auditOut { return auditOut(e) }
	return printList(a, w, ev, view, []string{"TIME", "TENANT", "KIND", "DETAIL"}, func(e store.AuditEvent) []string {
		return []string{when(e.CreatedAt), e.TenantID, e.Kind, e.Detail}
	})
}

// withStore runs fn with the configured store open, for the commands that
// touch only the database.
func (a *app) withStore(ctx context.Context, fn func(*store.Store) error) error {
	st, err := server.OpenStore(ctx, a.cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	return fn(st)
}

func (a *app) migrateCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "migrate",
		Short: "Apply the database migrations and print the schema version (serving migrates too)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withStore(cmd.Context(), func(st *store.Store) error {
				if a.json {
					return a.print(cmd.OutOrStdout(), map[string]any{"dialect": st.Dialect(), "version": st.SchemaVersion()}, nil, nil)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "schema version %d (%s)\n", st.SchemaVersion(), st.Dialect())
				return nil
			})
		},
	}
	c.Flags().BoolVar(&a.json, "json", false, "print JSON")
	return c
}

func (a *app) tenantCmd() *cobra.Command {
	g := a.group("tenant", "Manage tenants")
	list := &cobra.Command{
		Use:   "list",
		Short: "List tenants",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withStore(cmd.Context(), func(st *store.Store) error {
				ts, err := st.ListTenants(cmd.Context())
				if err != nil {
					return err
				}
				return a.printTenants(cmd.OutOrStdout(), ts)
			})
		},
	}
	var tier string
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a tenant with an active subscription and its bucket (add people with user add --tenant)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withServer(cmd.Context(), func(srv *server.Server) error {
				t, err := srv.CreateTenant(cmd.Context(), tier)
				if err != nil {
					return err
				}
				return a.printTenants(cmd.OutOrStdout(), []store.Tenant{t})
			})
		},
	}
	create.Flags().StringVar(&tier, "tier", "basic", "subscription tier")
	status := func(use, short, to string) *cobra.Command {
		return &cobra.Command{
			Use:   use + " TENANT-ID",
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return a.withStore(cmd.Context(), func(st *store.Store) error {
					if err := server.SetTenantStatus(cmd.Context(), st, args[0], to); err != nil {
						return err
					}
					fmt.Fprintf(cmd.OutOrStdout(), "tenant %s is %s\n", args[0], to)
					return nil
				})
			},
		}
	}
	var subTier string
	subscription := &cobra.Command{
		Use:   "subscription TENANT-ID STATUS",
		Short: "Set a tenant's subscription: " + strings.Join(server.SubscriptionStatuses, ", ") + " (only active and trialing sync)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withStore(cmd.Context(), func(st *store.Store) error {
				if err := server.SetSubscription(cmd.Context(), st, args[0], args[1], subTier); err != nil {
					return err
				}
				t, err := st.TenantByID(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				return a.printTenants(cmd.OutOrStdout(), []store.Tenant{t})
			})
		},
	}
	subscription.Flags().StringVar(&subTier, "tier", "", "subscription tier (default: keep the tenant's)")
	del := &cobra.Command{
		Use:   "delete TENANT-ID",
		Short: "Mark a tenant deleted and revoke its keys (its bucket and notes are kept)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withServer(cmd.Context(), func(srv *server.Server) error {
				n, err := srv.DeleteTenant(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "tenant %s is deleted; %d keys revoked\n", args[0], n)
				return nil
			})
		},
	}
	g.AddCommand(list, create,
		status("suspend", "Suspend a tenant: the API refuses it until activated", store.TenantSuspended),
		status("activate", "Reactivate a suspended tenant", store.TenantActive),
		subscription, del)
	return g
}

func (a *app) userCmd() *cobra.Command {
	g := a.group("user", "Manage accounts")
	var tenant string
	add := &cobra.Command{
		Use:     "add EMAIL",
		Short:   "Create an account, with a new tenant and bucket unless --tenant (password from BM_SERVER_PASSWORD)",
		Example: "  BM_SERVER_PASSWORD=... bm-server user add me@example.com --data-dir /var/lib/bm-server",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pw, err := a.password()
			if err != nil {
				return err
			}
			created := func(acc store.Account, err error) error {
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "created %s (tenant %s)\n", acc.Email, acc.TenantID)
				return nil
			}
			if tenant != "" {
				return a.withStore(cmd.Context(), func(st *store.Store) error {
					return created(server.AddAccount(cmd.Context(), st, tenant, args[0], pw))
				})
			}
			return a.withServer(cmd.Context(), func(srv *server.Server) error {
				return created(srv.CreateAccount(cmd.Context(), args[0], pw))
			})
		},
	}
	add.Flags().StringVar(&tenant, "tenant", "", "add the account to this existing tenant")
	var listTenant string
	list := &cobra.Command{
		Use:   "list",
		Short: "List accounts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withStore(cmd.Context(), func(st *store.Store) error {
				as, err := st.ListAccounts(cmd.Context(), listTenant)
				if err != nil {
					return err
				}
				return a.printAccounts(cmd.OutOrStdout(), as)
			})
		},
	}
	list.Flags().StringVar(&listTenant, "tenant", "", "only this tenant's accounts")
	passwd := &cobra.Command{
		Use:   "passwd EMAIL",
		Short: "Set an account's password (from BM_SERVER_PASSWORD) and end its sessions, revoking the keys they minted",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pw, err := a.password()
			if err != nil {
				return err
			}
			return a.withServer(cmd.Context(), func(srv *server.Server) error {
				n, err := srv.SetPassword(cmd.Context(), args[0], pw)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "password of %s changed; %d sessions ended\n", store.NormalizeEmail(args[0]), n)
				return nil
			})
		},
	}
	// account is a subcommand acting on the account named by its argument
	// with a server (the keys of ended sessions are revoked at the
	// provider); act returns what to print.
	account := func(use, short string, act func(ctx context.Context, srv *server.Server, email string) (string, error)) *cobra.Command {
		return &cobra.Command{
			Use:   use + " EMAIL",
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return a.withServer(cmd.Context(), func(srv *server.Server) error {
					out, err := act(cmd.Context(), srv, store.NormalizeEmail(args[0]))
					if err != nil {
						return err
					}
					fmt.Fprintln(cmd.OutOrStdout(), out)
					return nil
				})
			},
		}
	}
	disable := account("disable", "Stop an account from signing in and end its sessions, revoking the keys they minted",
		func(ctx context.Context, srv *server.Server, email string) (string, error) {
			n, err := srv.DisableAccount(ctx, email)
			return fmt.Sprintf("%s disabled; %d sessions ended", email, n), err
		})
	enable := account("enable", "Let a disabled account sign in again",
		func(ctx context.Context, srv *server.Server, email string) (string, error) {
			return email + " enabled", srv.EnableAccount(ctx, email)
		})
	logout := account("logout", "End every session of an account (it signs in again), revoking the keys they minted",
		func(ctx context.Context, srv *server.Server, email string) (string, error) {
			n, err := srv.EndAccountSessions(ctx, email)
			return fmt.Sprintf("%d sessions of %s ended", n, email), err
		})
	g.AddCommand(add, list, passwd, disable, enable, logout)
	return g
}

func (a *app) keyCmd() *cobra.Command {
	g := a.group("key", "Manage bucket-scoped mount keys")
	var tenant string
	var all bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List mount keys (active ones unless --all)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withStore(cmd.Context(), func(st *store.Store) error {
				cs, err := st.ListAllCredentials(cmd.Context(), tenant, all)
				if err != nil {
					return err
				}
				return a.printKeys(cmd.OutOrStdout(), cs)
			})
		},
	}
	list.Flags().StringVar(&tenant, "tenant", "", "only this tenant's keys")
	list.Flags().BoolVar(&all, "all", false, "include revoked keys")
	revoke := &cobra.Command{
		Use:   "revoke KEY-ID",
		Short: "Revoke a mount key in the store and at the storage provider",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withServer(cmd.Context(), func(srv *server.Server) error {
				c, err := srv.RevokeKey(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "key %s revoked (deletion %s)\n", c.ID, c.DeletionStatus)
				return nil
			})
		},
	}
	g.AddCommand(list, revoke)
	return g
}

func (a *app) auditCmd() *cobra.Command {
	var tenant string
	var limit int
	c := &cobra.Command{
		Use:   "audit",
		Short: "Show the audit trail, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withStore(cmd.Context(), func(st *store.Store) error {
				var ev []store.AuditEvent
				var err error
				if tenant != "" {
					ev, err = st.ListAudit(cmd.Context(), tenant, limit)
				} else {
					ev, err = st.ListAllAudit(cmd.Context(), limit)
				}
				if err != nil {
					return err
				}
				return a.printAudit(cmd.OutOrStdout(), ev)
			})
		},
	}
	c.Flags().StringVar(&tenant, "tenant", "", "only this tenant's events")
	c.Flags().IntVar(&limit, "limit", 100, "how many events")
	c.Flags().BoolVar(&a.json, "json", false, "print JSON instead of a table")
	return c
}
