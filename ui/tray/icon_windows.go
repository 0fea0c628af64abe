package tray

import (
	"fyne.io/systray"

	"github.com/basicmachines-co/bm-agent/ui/tray/icons"
)

// setIcon sends the ICO: Windows picks the size the notification area
// wants (16 px at 100 %, 24 at 150 %, 32 at 200 %).
func setIcon(s icons.State) { systray.SetIcon(icons.ICO(s)) }
