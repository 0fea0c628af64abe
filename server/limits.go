package server

import (
	"github.com/basicmachines-co/bm-agent/server/limit"
	"github.com/basicmachines-co/bm-agent/server/limit/pglimit"
	"github.com/basicmachines-co/bm-agent/server/store"
)

// limitBackend is where the built-in issuer's rate limits and sign-in
// backoff count: this process's memory on SQLite (a single server), and
// PostgreSQL on PostgreSQL (package pglimit), so that a fleet of replicas
// holds them together rather than each replica on its own. While
// PostgreSQL cannot answer they hold per replica (see pglimit). secret
// keys the hashes of the stored keys: the OAuth secret, the same on
// every replica. Connection bounds (limit.Conns) stay per process: they
// are about this process's file descriptors.
func (s *Server) limitBackend(secret []byte) (limit.Backend, error) {
	if s.store.Dialect() != store.DialectPostgres || s.cfg.localLimits {
		return limit.Local{}, nil
	}
	return pglimit.New(pglimit.Config{DB: s.store.DB(), Secret: secret, Logger: s.cfg.Logger.With("component", "limits")})
}

// oidcLimitsKey keys pglimit's hashes in OIDC mode, where only the mint
// limit (keyed by tenant id) counts there.
const oidcLimitsKey = "bm-server: limits of tenants of an external issuer"
