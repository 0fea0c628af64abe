package syncer

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/basicmachines-co/bm-agent/internal/jsonl"
)

// Why a journal.
//
// bisync records what a run did in its listings only at the end of the
// run. A run that stops in the middle (a kill, a lost connection) leaves
// the listings of the run before, so the next run takes the first run's
// own copies for changes a person made: a note it downloaded looks edited
// here, and if the other side deleted that note meanwhile, the "edit"
// wins and the note comes back. The guards therefore journal every copy
// and delete as it completes; before the next run the journal is played
// into the listings, which then say what both sides really had.

// journalOp is one operation of a run. The bucket's are journaled once
// done; the notes folder's just before, with what the folder must show
// for the operation to count (a kill may land between the two), which
// playJournal checks.
type journalOp struct {
	// "copy": Path is on both sides as L and R; "gone": on neither;
	// "gone1"/"gone2": not on that side; "partial": a download's partial
	// file in the folder, removed if a kill left it.
	Op   string `json:"op"`
	Path string `json:"path"`
	L    *entry `json:"l,omitempty"`
	R    *entry `json:"r,omitempty"`
	// Check: "local" (the folder's file must be L) or "absent" (the
	// folder must not have it); "" for an operation already done.
	Check string `json:"check,omitempty"`
}

// entry is a file's size and modtime as a listing records them.
type entry struct {
	Size int64     `json:"size"`
	Time time.Time `json:"time"`
}

func (e *Engine) journalPath() string { return e.basePath + ".journal" }

// journal appends an operation (no fsync: a kill loses nothing the page
// cache holds; after a power loss the listings are a run older, as
// without a journal).
func (e *Engine) journal(op journalOp) {
	if err := jsonl.Append(e.journalPath(), op, false); err != nil {
		e.log.Warn("could not journal a sync operation", "err", err)
	}
}

// playJournal applies the journal of an unfinished run to the listings
// and removes it; it reports how many operations it played.
func (e *Engine) playJournal() (int, error) {
	ops, err := jsonl.Read[journalOp](e.journalPath(), func(op journalOp) bool { return op.Path != "" })
	if err != nil {
		return 0, fmt.Errorf("read the journal: %w", err)
	}
	if len(ops) > 0 {
		e.restoreErrListings()
		g := newGuardPass(e, e.log, "")
		set1, set2 := map[string]*listingEntry{}, map[string]*listingEntry{}
		for _, op := range ops {
			if op.Op == "partial" {
				g.removePartial(op.Path)
				continue
			}
			if !g.journalHeld(op) {
				continue // announced, and the kill came first
			}
			switch op.Op {
			case "copy":
				if op.L != nil && op.R != nil {
					set1[op.Path] = &listingEntry{size: op.L.Size, time: op.L.Time}
					set2[op.Path] = &listingEntry{size: op.R.Size, time: op.R.Time}
				}
			case "gone":
				set1[op.Path], set2[op.Path] = nil, nil
			case "gone1":
				set1[op.Path] = nil
			case "gone2":
				set2[op.Path] = nil
			}
		}
		if err := setListingEntries(e.listing1, set1); err != nil {
			return 0, fmt.Errorf("play the journal: %w", err)
		}
		if err := setListingEntries(e.listing2, set2); err != nil {
			return 0, fmt.Errorf("play the journal: %w", err)
		}
	}
	if err := os.Remove(e.journalPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return len(ops), fmt.Errorf("remove the journal: %w", err)
	}
	return len(ops), nil
}

// clearJournal drops the journal of a run whose listings bisync saved.
// journalPending reports whether an unfinished pass left a journal (the
// next full pass plays it).
func (e *Engine) journalPending() bool {
	_, err := os.Stat(e.journalPath())
	return err == nil
}

func (e *Engine) clearJournal() {
	if err := os.Remove(e.journalPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		e.log.Warn("could not remove the journal", "err", err)
	}
}

// removePartial removes a download's partial file that an earlier try
// left (a kill, a full disk): a copy of a version the bucket has; the
// note it was for is untouched or already in place.
func (g *guardPass) removePartial(path string) {
	if !partialSuffix.MatchString(path) {
		return
	}
	switch err := os.Remove(g.localPath(path)); {
	case err == nil:
		g.log.Info("removed a download that an earlier try left unfinished", "file", path)
	case !notThere(err):
		g.log.Warn("could not remove a download that an earlier try left unfinished", "file", path, "err", err)
	}
}

// journalHeld reports whether the folder shows what a journaled operation
// promised.
func (g *guardPass) journalHeld(op journalOp) bool {
	st, err := os.Lstat(g.localPath(op.Path))
	switch op.Check {
	case "local":
		return err == nil && op.L != nil && st.Size() == op.L.Size && st.ModTime().Equal(op.L.Time)
	case "absent":
		return notThere(err)
	}
	return true
}
