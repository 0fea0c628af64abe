package syncer

import (
	"fmt"

	"github.com/rclone/rclone/cmd/bisync"
)

// Profile is a named set of safety settings for a sync pair (SPEC-8's
// bisync profiles).
type Profile string

// The profiles. The zero Profile means ProfileBalanced.
const (
	// ProfileSafe keeps both versions of a file changed on both sides
	// (each renamed with a conflict suffix naming its device), refuses a
	// pass that deletes more than 10% of a side, and checks access files.
	ProfileSafe Profile = "safe"
	// ProfileBalanced (the default) lets the newer version win and keeps
	// the loser as a conflict file and allows 25% deletes. SPEC-8's table
	// also turns the access check on, but the real Basic Memory client ran
	// its default without --check-access (see the reference README), and
	// a default that needs a marker file in every notes folder surprises
	// people: balanced follows the client.
	ProfileBalanced Profile = "balanced"
	// ProfileFast lets the newer version win, allows 50% deletes and skips
	// the access check.
	ProfileFast Profile = "fast"
)

// AccessCheckFile is the file a profile with an access check expects on
// both sides (bisync's --check-access). The engine creates it in the
// notes folder when it establishes a baseline.
const AccessCheckFile = bisync.DefaultCheckFilename

// accessCheckBody is the content the engine writes; the same on every
// device, so two devices never make it a conflict.
const accessCheckBody = "bm-agent access check: keep this file, it proves both sides of the sync are reachable.\n"

// Profiles lists the known profiles.
func Profiles() []Profile { return []Profile{ProfileSafe, ProfileBalanced, ProfileFast} }

// ParseProfile checks a profile name; "" is ProfileBalanced.
func ParseProfile(s string) (Profile, error) {
	p := Profile(s)
	if p == "" {
		return ProfileBalanced, nil
	}
	if _, ok := profileSettings[p]; !ok {
		return "", fmt.Errorf("syncer: unknown profile %q (want safe, balanced or fast)", s)
	}
	return p, nil
}

// String returns the name.
func (p Profile) String() string { return string(p) }

// profileSetting is what a profile means to bisync.
type profileSetting struct {
	resolve     bisync.Prefer // conflict resolution
	maxDelete   int           // percent
	checkAccess bool
}

var profileSettings = map[Profile]profileSetting{
	ProfileSafe:     {resolve: bisync.PreferNone, maxDelete: 10, checkAccess: true},
	ProfileBalanced: {resolve: bisync.PreferNewer, maxDelete: DefaultMaxDelete, checkAccess: false},
	ProfileFast:     {resolve: bisync.PreferNewer, maxDelete: 50, checkAccess: false},
}

// settings returns the profile's settings (balanced for "").
func (p Profile) settings() profileSetting {
	if s, ok := profileSettings[p]; ok {
		return s
	}
	return profileSettings[ProfileBalanced]
}
