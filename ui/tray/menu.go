// Package tray is bm-tray's menu: a model built from the daemon's ipc
// status (pure, testable) and the systray wiring that shows it. The tray is a
// pure client of the daemon: it never touches sync state itself.
package tray

import (
	"fmt"
	"time"

	"github.com/basicmachines-co/bm-agent/ipc"
)

// Model is what the tray shows for one daemon status.
type Model struct {
	Tooltip     string
	StatusLine  string
	AccountLine string
	LastSync    string
	CanSync     bool
	Paused      bool
	LoggedIn    bool
	LoginURL    string
}

// BuildModel turns a status (or the error reaching the daemon) into a menu.
func BuildModel(st ipc.Status, err error, now time.Time) Model {
	if err != nil {
		return Model{Tooltip: "Basic Memory: agent not running", StatusLine: "Agent not running"}
	}
	m := Model{LoggedIn: st.LoggedIn, Paused: st.Paused, LoginURL: st.LoginURL}
	switch st.State {
	case "idle":
		m.StatusLine = "Up to date"
	case "syncing":
		m.StatusLine = "Syncing…"
	case "paused":
		m.StatusLine = "Paused"
	case "offline":
		m.StatusLine = "Offline"
	case "logged_out":
		m.StatusLine = "Logged out"
	case "login_required":
		m.StatusLine = "Login required"
	case "error":
		m.StatusLine = "Error: " + st.Error
	default:
		m.StatusLine = "Starting…"
	}
	if st.LoggedIn {
		m.AccountLine = "Account: " + st.Account
		m.CanSync = !st.Paused
	} else {
		m.AccountLine = "Not logged in"
	}
	if ls := st.LastSync; ls != nil {
		m.LastSync = fmt.Sprintf("Last sync %s ago", now.Sub(ls.Start).Round(time.Second))
	} else {
		m.LastSync = "Never synced"
	}
	m.Tooltip = "Basic Memory: " + m.StatusLine
	return m
}
