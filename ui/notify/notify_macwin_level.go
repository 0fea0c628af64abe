package notify

import "github.com/basicmachines-co/bm-agent/ipc"

// What the macOS and Windows senders (notify_macwin.go) decide lives in
// this file, which builds everywhere, so that it is tested on Linux too;
// the senders themselves are only compile-checked there.

// isAlert reports whether a notification of this level is an alert (a
// notification with the system's sound, beeep.Alert) rather than a
// plain one (beeep.Notify): only errors, which stop syncing until the
// person acts (a held sync). Warnings (conflicts, files that cannot
// sync, a login required) and information stay quiet.
func isAlert(level string) bool {
	return level == ipc.LevelError
}
