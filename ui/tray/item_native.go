//go:build windows || darwin

package tray

import "time"

// itemReassert is zero: the native trays keep what was set once their
// loop runs (see item_sni.go for the panels of the StatusNotifierItem
// protocol, which need it).
const itemReassert time.Duration = 0

// primeItem sets nothing here (false): the native trays take their
// title, icon and tooltip once systray's loop runs, from onReady.
func primeItem(string, Model) bool { return false }
