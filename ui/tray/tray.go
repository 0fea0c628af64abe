package tray

import (
	"context"
	"log/slog"
	"os/exec"
	"runtime"
	"time"

	"fyne.io/systray"

	"github.com/basicmachines-co/bm-agent/ipc"
	"github.com/basicmachines-co/bm-agent/ui/browser"
)

// DefaultRefreshInterval is how often the tray polls the daemon's status.
const DefaultRefreshInterval = 2 * time.Second

// Option configures [Run].
type Option func(*options)

type options struct {
	refresh time.Duration
}

// WithRefreshInterval sets how often the tray polls the daemon's status
// (default [DefaultRefreshInterval]); d <= 0 keeps the default.
func WithRefreshInterval(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.refresh = d
		}
	}
}

// Run shows the tray until the user quits or ctx ends. It polls the daemon
// for its status and sends it commands. The tray can run once per process:
// fyne.io/systray's event loop does not restart.
func Run(ctx context.Context, c *ipc.Client, logger *slog.Logger, opts ...Option) {
	o := options{refresh: DefaultRefreshInterval}
	for _, opt := range opts {
		opt(&o)
	}
	ctx, cancel := context.WithCancel(ctx)
	systray.Run(func() { onReady(ctx, cancel, c, logger, o) }, cancel)
}

func onReady(ctx context.Context, cancel context.CancelFunc, c *ipc.Client, logger *slog.Logger, o options) {
	systray.SetTitle("Basic Memory")
	status := systray.AddMenuItem("Starting…", "")
	status.Disable()
	account := systray.AddMenuItem("", "")
	account.Disable()
	last := systray.AddMenuItem("", "")
	last.Disable()
	systray.AddSeparator()
	syncNow := systray.AddMenuItem("Sync now", "Run a sync pass now")
	pause := systray.AddMenuItem("Pause syncing", "")
	login := systray.AddMenuItem(LoginLabel, "Log in to Basic Memory cloud")
	loginDevice := systray.AddMenuItem(LoginDeviceLabel, "Log in with a code entered on another device")
	loginDevice.Hide()
	subscribe := systray.AddMenuItem("Subscribe…", "Open the subscription page")
	subscribe.Hide()
	systray.AddSeparator()
	quit := systray.AddMenuItem("Quit tray", "")

	go func() {
		<-ctx.Done()
		systray.Quit()
	}()
	var m Model
	refresh := func() {
		qctx, qcancel := context.WithTimeout(ctx, 3*time.Second)
		st, err := c.Status(qctx)
		qcancel()
		m = BuildModelNoBrowser(st, err, time.Now(), noBrowser())
		systray.SetTooltip(m.Tooltip)
		status.SetTitle(m.StatusLine)
		account.SetTitle(m.AccountLine)
		last.SetTitle(m.LastSync)
		if m.CanSync {
			syncNow.Enable()
		} else {
			syncNow.Disable()
		}
		if m.Paused {
			pause.SetTitle("Resume syncing")
		} else {
			pause.SetTitle("Pause syncing")
		}
		if m.LoggedIn {
			login.Hide()
		} else {
			login.Show()
		}
		if m.LoginDevice {
			loginDevice.Show()
		} else {
			loginDevice.Hide()
		}
		if m.SubscribeURL != "" {
			subscribe.Show()
		} else {
			subscribe.Hide()
		}
	}
	refresh()
	// systray hands a click over without waiting and drops it when nobody
	// is receiving at that moment; the loop below is busy while it talks to
	// the daemon, so each item gets a goroutine that always receives and
	// queues its clicks.
	clicks := make(chan *systray.MenuItem, 16)
	for _, it := range []*systray.MenuItem{syncNow, pause, login, loginDevice, subscribe, quit} {
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-it.ClickedCh:
					select {
					case clicks <- it:
					case <-ctx.Done():
						return
					}
				}
			}
		}()
	}
	go func() {
		t := time.NewTicker(o.refresh)
		defer t.Stop()
		for {
			var it *systray.MenuItem
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				refresh()
				continue
			case it = <-clicks:
			}
			switch it {
			case syncNow:
				if _, err := c.Sync(ctx, ipc.SyncRequest{}); err != nil {
					logger.Warn("sync now", "err", err)
				}
				refresh()
			case pause:
				var err error
				if m.Paused {
					err = c.Resume(ctx)
				} else {
					err = c.Pause(ctx)
				}
				if err != nil {
					logger.Warn("pause/resume", "err", err)
				}
				refresh()
			case login:
				start, err := c.Login(ctx)
				if err != nil {
					logger.Warn("login", "err", err)
					continue
				}
				openURL(start.URL)
			case loginDevice:
				// the daemon publishes the URL and the code: the status
				// line shows them, and the menu item opens the URL
				if _, err := c.LoginWith(ctx, ipc.LoginOptions{Device: true}); err != nil {
					logger.Warn("device login", "err", err)
				}
				refresh()
			case subscribe:
				openURL(m.SubscribeURL)
			case quit:
				cancel()
				return
			}
		}
	}()
}

// noBrowser reports whether no browser can be opened here (no xdg-open on
// a Linux desktop).
func noBrowser() bool {
	if runtime.GOOS == "darwin" || runtime.GOOS == "windows" {
		return false
	}
	_, err := exec.LookPath("xdg-open")
	return err != nil
}

func openURL(u string) { _ = browser.Command(u).Start() }
