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
	// LoginDevice offers "Log in (device code)": no browser opens here.
	LoginDevice bool
	// SubscribeURL is where to subscribe, when the account has no active
	// subscription.
	SubscribeURL string
}

// Menu labels of the login items.
const (
	LoginLabel       = "Log in…"
	LoginDeviceLabel = "Log in (device code)"
)

// BuildModel turns a status (or the error reaching the daemon) into a menu.
func BuildModel(st ipc.Status, err error, now time.Time) Model {
	return BuildModelNoBrowser(st, err, now, false)
}

// BuildModelNoBrowser is [BuildModel] for a desktop where no browser can be
// opened (noBrowser): a logged-out menu then offers a device-code login.
func BuildModelNoBrowser(st ipc.Status, err error, now time.Time, noBrowser bool) Model {
	if err != nil {
		return Model{Tooltip: "Basic Memory: agent not running", StatusLine: "Agent not running"}
	}
	m := Model{LoggedIn: st.LoggedIn, Paused: st.Paused, LoginURL: st.LoginURL}
	switch {
	case st.Hold != nil && (st.Hold.NeedsForce || st.Hold.Reason == ipc.HoldMaxDelete):
		m.StatusLine = "Paused: too many deletes — run bm-agent sync --force"
		if st.Hold.Reason != ipc.HoldMaxDelete {
			m.StatusLine = "Paused: " + st.Hold.Message + " — run bm-agent sync --force"
		}
	case st.Hold != nil && st.Hold.Reason == ipc.HoldResyncRequired:
		m.StatusLine = "Paused: " + st.Hold.Message + " — run bm-agent sync --resync"
	case st.Hold != nil:
		m.StatusLine = "Waiting: " + st.Hold.Message
	case st.Paused && st.PausedUntil != nil:
		m.StatusLine = "Paused until " + st.PausedUntil.In(now.Location()).Format("15:04")
	case !st.LoggedIn && st.LoginUserCode != "":
		m.StatusLine = "Log in: enter " + st.LoginUserCode + " at " + st.LoginURL
	case st.State == ipc.StateSubscriptionRequired:
		m.StatusLine = "Subscription required"
		m.SubscribeURL = st.SubscribeURL
	default:
		m.StatusLine = stateLine(st)
	}
	if st.LoggedIn {
		m.AccountLine = "Account: " + st.Account
		m.CanSync = !st.Paused && st.State != ipc.StateSubscriptionRequired
	} else {
		m.AccountLine = "Not logged in"
		m.LoginDevice = noBrowser
	}
	if ls := st.LastSync; ls != nil {
		m.LastSync = fmt.Sprintf("Last sync %s ago", now.Sub(ls.Start).Round(time.Second))
	} else {
		m.LastSync = "Never synced"
	}
	m.Tooltip = "Basic Memory: " + m.StatusLine
	return m
}

// stateLine names a state for the menu.
func stateLine(st ipc.Status) string {
	var line string
	switch st.State {
	case ipc.StateIdle:
		line = "Up to date"
	case ipc.StateSyncing:
		line = "Syncing…"
	case ipc.StatePaused:
		line = "Paused"
	case ipc.StateOffline:
		line = "Offline"
	case ipc.StateServerUnreachable:
		line = "Server unreachable"
	case ipc.StateBucketUnreachable:
		line = "Storage unreachable"
	case ipc.StateLoggedOut:
		line = "Logged out"
	case ipc.StateLoginRequired:
		line = "Login required"
	case ipc.StateSubscriptionRequired:
		line = "Subscription required"
	case ipc.StateError:
		line = "Error: " + st.Error
	default:
		line = "Starting…"
	}
	if st.State.Unreachable() && st.OfflineSince != nil {
		line += " since " + st.OfflineSince.Local().Format("15:04")
	}
	return line
}
