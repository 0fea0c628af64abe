// Package ipc is the local API between the bm-agent daemon and its clients
// (the bm-agent CLI and the bm-tray): HTTP+JSON over a unix socket that only
// the user can open.
//
// The daemon owns all state; clients only ask. The server side ([Server])
// serves a [Backend] under /v0/, the client side ([Client]) has one typed
// method per route. Socket handling ([Listen], [Dial]) follows tailscale's
// safesocket: a stale socket is dialed before it is removed, the socket's
// mode is the user's only, and clients may retry briefly while the daemon
// starts. Requests that carry an Origin or Referer header are refused, so
// no web page can drive the daemon.
package ipc
