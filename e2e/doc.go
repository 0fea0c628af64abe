// Package e2e is the end-to-end suite: it builds bm-agent and bm-server,
// runs them as processes through package harness, and checks the product
// the way a person uses it: login (browser and device flow), two-way sync,
// key rotation, remote-change events, versions and restore, the daemon's
// shutdown and its state on disk, and the fault suite (a ledger of every
// write checked after kills, outages, a full disk, hostile names and the
// other named cases; `make test-faults` runs it in full). It also checks
// the tree itself (every package has a doc comment). `go test -short`
// skips the tests that need the binaries.
package e2e
