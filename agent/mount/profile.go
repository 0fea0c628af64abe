package mount

import (
	"fmt"
	"strings"
	"time"
)

// Profile names a set of mount cache timings: how long directory listings
// and attributes are trusted, and how long a written file waits before it
// is uploaded. Shorter is fresher, longer is fewer requests.
type Profile string

// The profiles of the Basic Memory client (SPEC-8 Phase 4.2).
const (
	ProfileFast     Profile = "fast"
	ProfileBalanced Profile = "balanced"
	ProfileSafe     Profile = "safe"

	// DefaultProfile is used when none is given.
	DefaultProfile = ProfileBalanced
)

// Profiles lists the valid profiles, fastest first.
func Profiles() []Profile { return []Profile{ProfileFast, ProfileBalanced, ProfileSafe} }

// Settings are the rclone mount options a profile stands for. Every mount
// uses --vfs-cache-mode writes.
type Settings struct {
	DirCacheTime      time.Duration // --dir-cache-time: how long a listing is trusted
	CachePollInterval time.Duration // --vfs-cache-poll-interval: how often the write cache is scanned
	AttrTimeout       time.Duration // --attr-timeout: how long the kernel trusts attributes
	WriteBack         time.Duration // --vfs-write-back: delay before a closed file is uploaded

	// The safe profile of the Basic Memory client also passed these
	// flags. rclone's mount accepts them but its VFS does not act on them:
	// --conflict-suffix is a bisync option, --track-renames a sync/bisync
	// one and --backup-dir applies to sync, copy and move. They are kept
	// here so the profile is described faithfully and so a caller that
	// does run a sync next to the mount can use the same values.
	ConflictSuffix string // e.g. ".conflict-{DateTimeExt}"
	BackupDir      bool   // keep replaced files in <state dir>/conflicts
	TrackRenames   bool
}

var profiles = map[Profile]Settings{
	ProfileFast: {
		DirCacheTime: 5 * time.Second, CachePollInterval: 3 * time.Second,
		AttrTimeout: 3 * time.Second, WriteBack: 1 * time.Second,
	},
	ProfileBalanced: {
		DirCacheTime: 10 * time.Second, CachePollInterval: 5 * time.Second,
		AttrTimeout: 5 * time.Second, WriteBack: 2 * time.Second,
	},
	ProfileSafe: {
		DirCacheTime: 15 * time.Second, CachePollInterval: 10 * time.Second,
		AttrTimeout: 10 * time.Second, WriteBack: 5 * time.Second,
		ConflictSuffix: ".conflict-{DateTimeExt}", BackupDir: true, TrackRenames: true,
	},
}

// ParseProfile reads a profile name; "" is the default profile.
func ParseProfile(s string) (Profile, error) {
	p := Profile(strings.ToLower(strings.TrimSpace(s)))
	if p == "" {
		return DefaultProfile, nil
	}
	if _, ok := profiles[p]; !ok {
		return "", fmt.Errorf("unknown mount profile %q (want fast, balanced or safe)", s)
	}
	return p, nil
}

// Settings returns the profile's options; "" is the default profile.
func (p Profile) Settings() (Settings, error) {
	q, err := ParseProfile(string(p))
	if err != nil {
		return Settings{}, err
	}
	return profiles[q], nil
}

// RcloneArgs renders the settings as the rclone command-line flags they
// correspond to (for display and documentation: the mount itself is
// configured in code).
func (s Settings) RcloneArgs() []string {
	args := []string{
		"--vfs-cache-mode", "writes",
		"--dir-cache-time", s.DirCacheTime.String(),
		"--vfs-cache-poll-interval", s.CachePollInterval.String(),
		"--attr-timeout", s.AttrTimeout.String(),
		"--vfs-write-back", s.WriteBack.String(),
	}
	if s.ConflictSuffix != "" {
		args = append(args, "--conflict-suffix", s.ConflictSuffix)
	}
	if s.BackupDir {
		args = append(args, "--backup-dir", "<state>/conflicts")
	}
	if s.TrackRenames {
		args = append(args, "--track-renames")
	}
	return args
}
