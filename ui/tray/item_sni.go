//go:build !windows && !darwin

package tray

import (
	"time"

	"fyne.io/systray"
)

// fyne.io/systray (v1.12.2) exports the StatusNotifierItem's properties
// from a copy of the title, icon and tooltip set so far, while onReady
// already runs on another goroutine: a SetIcon, SetTitle or SetTooltip
// made between that copy and the export changes nothing on the bus and
// emits nothing, and the panel draws an empty slot until the next change
// (CI's TestTrayInPanel, one run in several under load). So the first
// ones are set before systray.Run (primeItem), where the copy finds them,
// and the current ones are sent again once the item is surely exported
// (itemReassert after start).

// itemReassert is when the tray sends its icon and tooltip again.
const itemReassert = 3 * time.Second

// primeItem sets the item's first title, icon and tooltip before
// systray.Run exports it (true: they are set).
func primeItem(title string, m Model) bool {
	systray.SetTitle(title)
	setIcon(m.Icon)
	systray.SetTooltip(m.Tooltip)
	return true
}
