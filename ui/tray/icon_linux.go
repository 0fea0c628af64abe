package tray

import (
	"fyne.io/systray"

	"github.com/basicmachines-co/bm-agent/ui/tray/icons"
)

// linuxIconSize is the PNG sent as the StatusNotifierItem's pixmap: the
// panels scale it to their 16-24 px slots (and 44 on HiDPI), and scaling
// down from 32 stays sharp.
const linuxIconSize = 32

func setIcon(s icons.State) { systray.SetIcon(icons.PNG(s, linuxIconSize)) }
