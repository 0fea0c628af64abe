package syncer

import (
	"regexp"
	"strconv"
	"strings"
)

// Sides and actions of a Change.
const (
	SideLocal = "local" // the notes folder
	SideCloud = "cloud" // the bucket
	SideBoth  = "both"  // a conflict: the file changed on both sides

	ActionCopy     = "copy"     // the file is written on Side (new or changed on the other side)
	ActionDelete   = "delete"   // the file is deleted on Side
	ActionConflict = "conflict" // new or changed on both sides: both versions are kept if they differ (identical content is left alone)
	ActionRename   = "rename"   // a conflict's version is renamed on Side (Path is the new name)
	ActionKeep     = "keep"     // not deleted on Side: the file changed after the pass listed it (the edit wins)
)

// Change is one step of a pass: what it did, or in a dry run what it
// would do.
type Change struct {
	Side   string `json:"side"`   // SideLocal, SideCloud or SideBoth
	Action string `json:"action"` // ActionCopy, ActionDelete, ActionConflict or ActionRename
	Path   string `json:"path"`   // slash-separated, relative to the folder / bucket root
}

// String is "cloud copy notes/a.md".
func (c Change) String() string { return c.Side + " " + c.Action + " " + c.Path }

// queueLine matches bisync's per-file decision lines:
// "- Path1             Queue copy to Path2                         - path".
var queueLine = regexp.MustCompile(`^- (\S+)\s+(.+?)\s+- (.+)$`)

// planFromLine turns one of bisync's decision log lines into a Change.
// prefix1 and prefix2 are the two paths' roots as bisync prints them.
func planFromLine(msg, prefix1, prefix2 string) (Change, bool) {
	m := queueLine.FindStringSubmatch(msg)
	if m == nil {
		return Change{}, false
	}
	tag, what, file := m[1], strings.TrimSpace(m[2]), m[3]
	if strings.HasPrefix(file, `"`) {
		if u, err := strconv.Unquote(file); err == nil {
			file = u
		}
	}
	rel := func() string {
		for _, p := range []string{prefix1, prefix2} {
			if p != "" && strings.HasPrefix(file, p) {
				return strings.TrimPrefix(file, p)
			}
		}
		return file
	}
	switch {
	case what == "Queue copy to Path2":
		return Change{Side: SideCloud, Action: ActionCopy, Path: rel()}, true
	case what == "Queue copy to Path1":
		return Change{Side: SideLocal, Action: ActionCopy, Path: rel()}, true
	case what == "Queue delete" && tag == "Path1":
		return Change{Side: SideLocal, Action: ActionDelete, Path: rel()}, true
	case what == "Queue delete" && tag == "Path2":
		return Change{Side: SideCloud, Action: ActionDelete, Path: rel()}, true
	case what == "New or changed in both paths":
		return Change{Side: SideBoth, Action: ActionConflict, Path: rel()}, true
	case what == "Renaming Path1 copy":
		return Change{Side: SideLocal, Action: ActionRename, Path: rel()}, true
	case what == "Renaming Path2 copy":
		return Change{Side: SideCloud, Action: ActionRename, Path: rel()}, true
	}
	return Change{}, false
}
