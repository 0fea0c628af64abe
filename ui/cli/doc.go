// Package cli holds the bm-agent commands that talk to a running daemon
// through ipc: setup, login, logout, status, sync, pause, resume, history,
// conflicts, versions, restore, logs, config, doctor, mount, unmount,
// mount-status, install and uninstall. It never touches sync state itself; `bm-agent run` (the
// daemon) is wired in by the main package, which calls [AddCommands], then
// [Finish], and exits with [ReportError]'s code.
//
// # Exit codes
//
// [ExitCode] maps a command's error to the process's exit code, in one
// place:
//
//	code  meaning                                          errors
//	0     ok                                               nil
//	1     error                                            anything else (a failed check of doctor, a failed pass)
//	2     usage: a bad flag, argument or command           *UsageError, cobra's own
//	3     the daemon is not running                        ipc.ErrNoDaemon
//	4     not logged in, or the login expired              ipc.ErrLoginRequired
//	5     the account has no active subscription           ipc.ErrSubscriptionRequired
//	6     sync is held: paused, or a safety check stopped  ErrSyncHeld, ipc.ErrPaused, ipc.ErrHeld
//	      it (too many deletes: `bm-agent sync --force`)
//	7     offline: the bucket or the server cannot be     ipc.ErrOffline
//	      reached (the daemon keeps trying by itself)
//	8     the daemon is busy (starting): try again         ipc.ErrBusy
//
// Under --json a failed command prints {"error": "...", "exit_code": N}
// ([ErrorJSON]) on stderr.
//
// # JSON output
//
// Every command takes --json (README.md's "JSON output" says the same for
// users). One answer is one indented JSON object on stdout; a stream is one
// compact JSON object per line; keys are snake_case. The shapes are the
// ipc package's wire types, so they change only when the local API does:
//
//	status                 ipc.Status
//	status --watch         ipc.Event per line (kind snapshot|state|progress|login|notification)
//	sync                   ipc.PassSummary of the pass that ran for it
//	history                ipc.History
//	conflicts              ipc.Conflicts
//	versions               ipc.Versions
//	restore                ipc.RestoreResult
//	logs [-f]              ipc.LogLine per line
//	config get             the settings object, with "sources": {"KEY": {"source", "name"}};
//	                       config get KEY: {"KEY": value, "sources": {"KEY": ...}}
//	config set KEY VALUE   the settings after the change (+ "restart_required",
//	                       "pending", "overridden_by")
//	doctor                 DoctorOutput {"ok", "checks": [ipc.DoctorCheck]}
//	mount, unmount,
//	mount-status           ipc.MountStatus
//	pause, resume          PauseResult {"paused", "paused_until"}
//	login                  ipc.LoginStart then ipc.Status, one per line
//	logout                 {"logged_in": false}
//	setup                  SetupResult {"changed", "steps", "status"}
//	install                InstallResult {"manager", "fallback", "files", "commands",
//	                       "started", "already_running", "daemon_running"}
//	uninstall              UninstallResult {"manager", "files", "commands", "stopped_pid"}
//
// # Shell completion
//
// cobra's `bm-agent completion bash|zsh|fish|powershell` prints a
// completion script; [Finish] makes sure the command is there.
package cli
