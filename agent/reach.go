package agent

import (
	"context"
	"net"
	"net/url"
	"time"

	"github.com/basicmachines-co/bm-agent/ipc"
)

// reachTimeout bounds the probe that tells "offline" from "the server (or
// the bucket) is down".
const reachTimeout = 3 * time.Second

// reachable reports whether a TCP connection to rawURL's host opens. It
// sends nothing: it only tells a host that is down or unreachable from one
// that answers.
func reachable(ctx context.Context, rawURL string) bool {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return false
	}
	port := u.Port()
	if port == "" {
		port = "443"
		if u.Scheme == "http" {
			port = "80"
		}
	}
	ctx, cancel := context.WithTimeout(ctx, reachTimeout)
	defer cancel()
	var dialer net.Dialer
	c, err := dialer.DialContext(ctx, "tcp", net.JoinHostPort(u.Hostname(), port))
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// unreachable is a state that says what cannot be reached, and its text.
type unreachable struct {
	state ipc.State
	code  ipc.Code
	msg   string
}

// bucketUnreachable names a pass that could not reach the bucket: the
// bucket alone, or everything (offline) when the server cannot be
// reached either.
func (d *Daemon) bucketUnreachable(ctx context.Context, err error) unreachable {
	if d.cloud.Host != "" && reachable(ctx, d.cloud.Host) {
		var endpoint string
		d.store.View(func(st *ipc.Status) { endpoint = st.Endpoint })
		return unreachable{ipc.StateBucketUnreachable, ipc.CodeBucketUnreachable, "cannot reach the bucket (" + endpoint + "): " + err.Error() +
			"; the server answers, so the storage service is down or blocked; bm-agent keeps trying by itself"}
	}
	return unreachable{ipc.StateOffline, ipc.CodeOffline, "neither the server nor the bucket can be reached (" + err.Error() +
		"); bm-agent syncs again by itself when the connection is back"}
}

// serverUnreachable names a session that could not reach the server: the
// server alone, or everything (offline) when the bucket of the stored key
// cannot be reached either.
func (d *Daemon) serverUnreachable(ctx context.Context, err error) unreachable {
	if key, kerr := d.creds.LoadS3Key(); kerr == nil && key != nil && reachable(ctx, key.Endpoint) {
		return unreachable{ipc.StateServerUnreachable, ipc.CodeServerUnreachable, "cannot reach the server " + d.cloud.Host + ": " + err.Error() +
			"; the bucket answers, so the server is down or blocked; bm-agent keeps trying by itself"}
	}
	return unreachable{ipc.StateOffline, ipc.CodeOffline, "neither the server nor the bucket can be reached (" + err.Error() +
		"); bm-agent syncs again by itself when the connection is back"}
}

// setUnreachable enters u's state, keeping when the connection was lost.
func (d *Daemon) setUnreachable(u unreachable) {
	d.store.Update(func(st *ipc.Status) { setUnreachableOf(st, u) })
}

// setUnreachableOf is setUnreachable inside a store update.
func setUnreachableOf(st *ipc.Status, u unreachable) {
	setStateOf(st, u.state, u.code, u.msg)
	if st.OfflineSince == nil {
		now := time.Now()
		st.OfflineSince = &now
	}
}
