package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/basicmachines-co/bm-agent/agent/syncer"
	"github.com/basicmachines-co/bm-agent/cloudapi"
	"github.com/basicmachines-co/bm-agent/internal/diskfree"
	"github.com/basicmachines-co/bm-agent/ipc"
)

// Thresholds of the doctor's checks.
const (
	maxClockSkew = 5 * time.Minute
	minFreeDisk  = 1 << 30
)

// inotifyWatchesFile holds the per-user inotify watch limit (Linux).
var inotifyWatchesFile = "/proc/sys/fs/inotify/max_user_watches"

// Logs implements ipc.LogSource from the daemon's log ring.
func (d *Daemon) Logs(ctx context.Context, req ipc.LogsRequest, fn func(ipc.LogLine) error) error {
	return d.logs.Logs(ctx, req, fn)
}

// Doctor implements ipc.Doctor: the daemon-side health checks, each with
// how to fix a failure.
func (d *Daemon) Doctor(ctx context.Context) ipc.DoctorReport {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	d.mu.Lock()
	s := d.session
	var engine passer
	if s != nil {
		engine = s.folderPair().engine // a key replacement swaps it under d.mu
	}
	d.mu.Unlock()
	var r ipc.DoctorReport
	r.Checks = append(r.Checks, checkKeyring(d.creds.Backend()))
	r.Checks = append(r.Checks, checkFolder(d.cfg.Folder))
	r.Checks = append(r.Checks, checkDisk(d.cfg.Folder))
	r.Checks = append(r.Checks, checkInotify(d.cfg.Folder))
	r.Checks = append(r.Checks, checkServer(ctx, d.hc, d.cloud.Host))
	if s == nil {
		r.Checks = append(r.Checks, ipc.DoctorCheck{Name: "token valid", OK: false, Detail: "not logged in", Fix: "run `bm-agent login`"})
		return r
	}
	if s.client != nil {
		r.Checks = append(r.Checks, checkToken(ctx, s.client))
	}
	r.Checks = append(r.Checks, d.checkS3(ctx, engine))
	return r
}

func checkKeyring(backend string) ipc.DoctorCheck {
	c := ipc.DoctorCheck{Name: "keychain", OK: true, Detail: backend}
	if backend == cloudapi.BackendFile {
		c.Warn = true
		c.Detail = "no OS keychain: tokens and keys are in a 0600 file"
		c.Fix = "install and unlock a keyring (gnome-keyring or KWallet on Linux), then log in again"
	}
	return c
}

func checkFolder(folder string) ipc.DoctorCheck {
	fi, err := os.Stat(folder)
	switch {
	case err != nil:
		return ipc.DoctorCheck{Name: "notes folder", Detail: err.Error(), Fix: "create " + folder + " or set another with `bm-agent config set folder PATH`"}
	case !fi.IsDir():
		return ipc.DoctorCheck{Name: "notes folder", Detail: folder + " is not a directory", Fix: "set a directory with `bm-agent config set folder PATH`"}
	}
	return ipc.DoctorCheck{Name: "notes folder", OK: true, Detail: folder}
}

func checkDisk(folder string) ipc.DoctorCheck {
	var free uint64
	dir := folder
	for {
		n, err := diskfree.Available(dir)
		if err == nil {
			free = n
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ipc.DoctorCheck{Name: "free disk", Detail: "cannot read the file system of " + folder, Fix: "check that " + folder + " exists"}
		}
		dir = parent
	}
	c := ipc.DoctorCheck{Name: "free disk", OK: true, Detail: fmt.Sprintf("%.1f GiB free", float64(free)/(1<<30))}
	if free < minFreeDisk {
		c.Warn = true
		c.Fix = "free some space on the notes folder's disk (less than 1 GiB is left)"
	}
	return c
}

// checkInotify compares the inotify watch limit with the folder's
// directory count (one watch each).
func checkInotify(folder string) ipc.DoctorCheck {
	b, err := os.ReadFile(inotifyWatchesFile)
	if err != nil {
		return ipc.DoctorCheck{Name: "inotify limits", OK: true, Detail: "no inotify limit to check on this system"}
	}
	limit, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return ipc.DoctorCheck{Name: "inotify limits", OK: true, Detail: "unreadable limit: " + strings.TrimSpace(string(b))}
	}
	dirs := 0
	_ = filepath.WalkDir(folder, func(_ string, e fs.DirEntry, err error) error {
		if err == nil && e.IsDir() {
			dirs++
		}
		return nil
	})
	c := ipc.DoctorCheck{Name: "inotify limits", OK: dirs < limit, Detail: fmt.Sprintf("%d directories, limit %d watches", dirs, limit)}
	if !c.OK {
		c.Fix = fmt.Sprintf("raise the limit: sudo sysctl fs.inotify.max_user_watches=%d (and in /etc/sysctl.d to keep it)", max(dirs*2, 524288))
	} else if dirs*10 > limit*8 {
		c.Warn = true
		c.Fix = "the folder is near the inotify limit: raise fs.inotify.max_user_watches"
	}
	return c
}

// checkServer GETs /proxy/health's host root and compares the server's
// Date header with the local clock.
func checkServer(ctx context.Context, hc *http.Client, host string) ipc.DoctorCheck {
	if host == "" {
		return ipc.DoctorCheck{Name: "server reachable", Detail: "no cloud host configured", Fix: "set BASIC_MEMORY_CLOUD_HOST or `bm-agent config set cloud_host URL`"}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(host, "/")+"/proxy/health", nil)
	if err != nil {
		return ipc.DoctorCheck{Name: "server reachable", Detail: err.Error(), Fix: "check cloud_host in `bm-agent config get`"}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return ipc.DoctorCheck{Name: "server reachable", Detail: err.Error(), Fix: "check the network connection and cloud_host"}
	}
	resp.Body.Close()
	c := ipc.DoctorCheck{Name: "server reachable", OK: resp.StatusCode < 500, Detail: host + ": HTTP " + strconv.Itoa(resp.StatusCode)}
	if !c.OK {
		c.Fix = "the server is failing; try again later"
	}
	return mergeClock(c, clockSkew(resp.Header.Get("Date"), time.Now()))
}

func mergeClock(server ipc.DoctorCheck, clock *ipc.DoctorCheck) ipc.DoctorCheck {
	if clock == nil {
		return server
	}
	// The clock check is reported next to the server's; keep them apart.
	server.Detail += "; " + clock.Detail
	if !clock.OK {
		server.OK = false
		server.Fix = clock.Fix
	}
	return server
}

// clockSkew compares a Date header with now; nil when there is none.
func clockSkew(date string, now time.Time) *ipc.DoctorCheck {
	if date == "" {
		return nil
	}
	t, err := http.ParseTime(date)
	if err != nil {
		return nil
	}
	skew := now.Sub(t)
	if skew < 0 {
		skew = -skew
	}
	c := &ipc.DoctorCheck{Name: "clock skew", OK: skew <= maxClockSkew, Detail: "clock skew " + skew.Round(time.Second).String()}
	if !c.OK {
		c.Fix = "set the system clock (enable NTP: timedatectl set-ntp true); S3 refuses requests signed more than 15 minutes off"
	}
	return c
}

func checkToken(ctx context.Context, client *cloudapi.Client) ipc.DoctorCheck {
	if err := client.ProxyHealth(ctx); err != nil {
		return ipc.DoctorCheck{Name: "token valid", Detail: err.Error(), Fix: "run `bm-agent login`"}
	}
	return ipc.DoctorCheck{Name: "token valid", OK: true, Detail: "the tenant API accepts the token"}
}

// s3Checker is an engine that can check the bucket on its own
// (*syncer.Engine: one ListObjectsV2 with the device key).
type s3Checker interface {
	Check(ctx context.Context) error
}

// checkS3 lists the bucket with the device key, and says what to do when
// the key is refused or the endpoint cannot be reached.
func (d *Daemon) checkS3(ctx context.Context, engine passer) ipc.DoctorCheck {
	const name = "S3 reachable"
	c, ok := engine.(s3Checker)
	if !ok {
		return ipc.DoctorCheck{Name: name, OK: true, Warn: true, Detail: "the engine cannot check the bucket on its own; the last pass says: " + d.lastPassDetail()}
	}
	err := c.Check(ctx)
	switch {
	case err == nil:
		return ipc.DoctorCheck{Name: name, OK: true, Detail: "the device key lists the bucket"}
	case errors.Is(err, syncer.ErrKeyRejected):
		return ipc.DoctorCheck{Name: name, Detail: err.Error(),
			Fix: "the daemon mints a new key on its next pass (`bm-agent sync`); if that fails, run `bm-agent logout` then `bm-agent login`"}
	case errors.Is(err, syncer.ErrOffline) || isOffline(err):
		return ipc.DoctorCheck{Name: name, Detail: err.Error(),
			Fix: "check the network connection and that the storage endpoint is up; syncing resumes by itself"}
	}
	return ipc.DoctorCheck{Name: name, Detail: err.Error(), Fix: "run `bm-agent sync` and read `bm-agent logs`; if it persists, log out and in again"}
}

func (d *Daemon) lastPassDetail() string {
	detail := "ok"
	d.store.View(func(st *ipc.Status) {
		switch {
		case st.LastSync == nil:
			detail = "no pass yet"
		case st.LastSync.Error != "":
			detail = st.LastSync.Error
		}
	})
	return detail
}
