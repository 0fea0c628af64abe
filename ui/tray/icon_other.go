//go:build !linux && !windows && !darwin

package tray

import (
	"fyne.io/systray"

	"github.com/basicmachines-co/bm-agent/ui/tray/icons"
)

// setIcon sends a PNG, as on Linux (the BSDs' panels speak the same
// StatusNotifierItem protocol).
func setIcon(s icons.State) { systray.SetIcon(icons.PNG(s, 32)) }
